"""Load and validate the YAML configuration into frozen dataclasses (CONTRACT §2).

Every fault is a :class:`~sentinel.located.Problem` at the position of the
offending key or value; all of a file's faults are raised together in one
:class:`~sentinel.located.ProblemError`. Nothing falls back to a default when
a value is wrong.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sentinel.alert import SEVERITIES
from sentinel.located import Checker, Mark, Node, load, type_name

DEFAULT_CONFIG = Path("/etc/sentinel/config.yaml")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Secret:
    """A secret value that never shows itself in logs, reprs or errors."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin  # "env FOO" or "file /path": safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.origin}, ***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class HostConfig:
    name: str
    addresses: tuple[IPAddress, ...]
    site: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class NetworkConfig:
    interfaces: tuple[str, ...] = ()
    home_nets: tuple[IPNetwork, ...] = ()
    snaplen: int = 256
    buffer_size: int = 32 * 2**20
    flow_timeout: float = 60.0
    flow_interval: float = 300.0
    max_flows: int = 100_000


@dataclass(frozen=True)
class FimPath:
    path: Path
    recursive: bool = True
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeySource:
    """Where an HMAC key comes from: an env var, or a file (created if absent)."""

    file: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class FimConfig:
    paths: tuple[FimPath, ...] = ()
    exclude: tuple[str, ...] = ()
    rescan_interval: float = 3600.0
    baseline: Path = Path("baseline.db")
    key: KeySource = KeySource()


@dataclass(frozen=True)
class RulesConfig:
    paths: tuple[Path, ...] = ()
    reload_debounce: float = 1.0


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def contains(self, ts: float) -> bool:
        return self.start.timestamp() <= ts < self.end.timestamp()


@dataclass(frozen=True)
class JournalConfig:
    path: Path = Path("alerts.jsonl")
    fsync: str = "record"  # record | interval | none
    fsync_interval: float = 1.0
    rotate_size: int = 64 * 2**20
    key: KeySource = KeySource()


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] = ("127.0.0.1", 9917)
    enabled: bool = True
    tls: TLSServerConfig | None = None
    basic_auth: tuple[tuple[str, str], ...] = ()  # (user, bcrypt hash)


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    urls: tuple[str, ...]
    format: str = "json"
    min_severity: str = "info"
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    include_rules: tuple[str, ...] = ()
    exclude_rules: tuple[str, ...] = ()
    secret: Secret | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 10.0
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    retry_initial: float = 1.0
    retry_max: float = 300.0
    resend_interval: float = 60.0
    resolve_after: float = 300.0


@dataclass(frozen=True)
class OutputsConfig:
    journal: JournalConfig = JournalConfig()
    metrics: MetricsConfig = MetricsConfig()
    webhooks: tuple[WebhookConfig, ...] = ()


@dataclass(frozen=True)
class AttestConfig:
    """Public attestations: the Ed25519 signing key, how often, where they go."""

    key_file: Path = Path("attest.key")
    interval: float = 3600.0
    dir: Path = Path("attestations")


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``source`` is the file it was read from."""

    source: Path
    host: HostConfig
    state_dir: Path
    network: NetworkConfig = NetworkConfig()
    fim: FimConfig = FimConfig()
    rules: RulesConfig = RulesConfig()
    lists: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    list_marks: dict[str, Mark] = field(default_factory=dict)
    schedules: dict[str, tuple[Window, ...]] = field(default_factory=dict)
    outputs: OutputsConfig = OutputsConfig()
    attest: AttestConfig = AttestConfig()

    def in_state(self, p: Path) -> Path:
        """Resolve an output path against ``state_dir``."""
        return p if p.is_absolute() else self.state_dir / p


TOP_KEYS = ("host", "state_dir", "network", "fim", "rules", "lists", "schedules", "outputs",
            "attest")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def load_config(path: Path) -> Config:
    """Read ``path`` and return a validated :class:`Config`, or raise ProblemError."""
    root = load(path)
    return ConfigReader(path).read(root)


class ConfigReader:
    """Walks the YAML tree, converting and checking each section."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.c = Checker()

    def read(self, root: Node) -> Config:
        c = self.c
        if root.value is None:
            c.error(root.mark, "the config file is empty; expected a mapping with keys: "
                    + ", ".join(TOP_KEYS))
            c.raise_if_any()
        top = c.mapping(root, "the config", TOP_KEYS)
        if top is None:
            c.raise_if_any()
            msg = "unreachable"
            raise AssertionError(msg)
        state_dir = Path("/var/lib/sentinel")
        if "state_dir" in top and (s := c.string(top["state_dir"], "state_dir")):
            state_dir = self._path(s)
        host = self._host(top.get("host"))
        network = self._network(top["network"]) if "network" in top else NetworkConfig()
        fim = self._fim(top["fim"]) if "fim" in top else FimConfig()
        rules = self._rules(top["rules"]) if "rules" in top else RulesConfig()
        lists, list_marks = self._lists(top["lists"]) if "lists" in top else ({}, {})
        schedules = self._schedules(top["schedules"]) if "schedules" in top else {}
        outputs = self._outputs(top["outputs"]) if "outputs" in top else OutputsConfig()
        attest = self._attest(top["attest"]) if "attest" in top else AttestConfig()
        c.raise_if_any()
        return Config(
            source=self.path,
            host=host,
            state_dir=state_dir,
            network=network,
            fim=fim,
            rules=rules,
            lists=lists,
            list_marks=list_marks,
            schedules=schedules,
            outputs=outputs,
            attest=attest,
        )

    # -- helpers ---------------------------------------------------------

    def _path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.base / p

    def _ip(self, node: Node, where: str) -> IPAddress | None:
        if isinstance(node.value, str):
            try:
                return ipaddress.ip_address(node.value)
            except ValueError:
                pass
        shown = repr(node.value) if isinstance(node.value, str) else type_name(node.value)
        self.c.error(node.mark, f"{where}: {shown} is not an IP address; valid: e.g. 10.20.0.10"
                     " or 2001:db8::1")
        return None

    def _cidr(self, node: Node, where: str) -> IPNetwork | None:
        if isinstance(node.value, str):
            try:
                return ipaddress.ip_network(node.value, strict=False)
            except ValueError:
                pass
        shown = repr(node.value) if isinstance(node.value, str) else type_name(node.value)
        self.c.error(node.mark, f"{where}: {shown} is not a network in CIDR notation; valid:"
                     " e.g. 10.20.0.0/16 or 2001:db8::/32")
        return None

    def _key_source(self, m: dict[str, Node], where: str, default_file: str) -> KeySource:
        file_ = m.get("key_file")
        env = m.get("key_env")
        if file_ is not None and env is not None:
            self.c.error(env.mark, f"{where}: give key_file or key_env, not both")
            return KeySource()
        if env is not None:
            name = self.c.string(env, f"{where}.key_env")
            if name is not None and not os.environ.get(name):
                self.c.error(env.mark, f"{where}.key_env: environment variable {name} is not set")
            return KeySource(env=name)
        if file_ is not None:
            s = self.c.string(file_, f"{where}.key_file")
            return KeySource(file=Path(s) if s else None)
        return KeySource(file=Path(default_file))

    # -- sections --------------------------------------------------------

    def _host(self, node: Node | None) -> HostConfig:
        c = self.c
        name = socket.gethostname()
        addresses: tuple[IPAddress, ...] | None = None
        site = region = None
        if node is not None:
            m = c.mapping(node, "host", ("name", "addresses", "site", "region"))
            if m is not None:
                if "name" in m:
                    name = c.string(m["name"], "host.name") or name
                if "addresses" in m and (items := c.seq(m["addresses"], "host.addresses")):
                    addrs = [self._ip(i, f"host.addresses[{n}]") for n, i in enumerate(items)]
                    addresses = tuple(a for a in addrs if a is not None)
                if "site" in m:
                    site = c.string(m["site"], "host.site")
                if "region" in m:
                    region = c.string(m["region"], "host.region")
        if addresses is None:
            from sentinel.hostinfo import local_addresses

            addresses = tuple(local_addresses())
        return HostConfig(name, addresses, site, region)

    def _network(self, node: Node) -> NetworkConfig:
        c = self.c
        keys = ("interfaces", "home_nets", "snaplen", "buffer_size", "flow_timeout",
                "flow_interval", "max_flows")
        m = c.mapping(node, "network", keys)
        if m is None:
            return NetworkConfig()
        kw: dict[str, Any] = {}
        if "interfaces" in m and (ifs := c.strings(m["interfaces"], "network.interfaces")):
            for i, (iface, inode) in enumerate(zip(ifs, m["interfaces"].value, strict=True)):
                if len(iface) > 15 or "/" in iface or " " in iface:
                    c.error(inode.mark, f"network.interfaces[{i}]: {iface!r} is not an interface"
                            " name (at most 15 characters, no '/' or spaces), or 'any'")
            kw["interfaces"] = tuple(ifs)
        if "home_nets" in m and (items := c.seq(m["home_nets"], "network.home_nets")):
            nets = [self._cidr(n, f"network.home_nets[{i}]") for i, n in enumerate(items)]
            kw["home_nets"] = tuple(n for n in nets if n is not None)
        if "snaplen" in m:
            kw["snaplen"] = c.integer(m["snaplen"], "network.snaplen", 64, 65535)
        if "buffer_size" in m:
            kw["buffer_size"] = c.size(m["buffer_size"], "network.buffer_size")
        for k in ("flow_timeout", "flow_interval"):
            if k in m:
                kw[k] = c.duration(m[k], f"network.{k}")
        if "max_flows" in m:
            kw["max_flows"] = c.integer(m["max_flows"], "network.max_flows", 1)
        return NetworkConfig(**{k: v for k, v in kw.items() if v is not None})

    def _fim(self, node: Node) -> FimConfig:
        c = self.c
        keys = ("paths", "exclude", "rescan_interval", "baseline", "key_file", "key_env")
        m = c.mapping(node, "fim", keys)
        if m is None:
            return FimConfig()
        kw: dict[str, Any] = {}
        if "paths" in m and (items := c.seq(m["paths"], "fim.paths")) is not None:
            paths = []
            for i, item in enumerate(items):
                where = f"fim.paths[{i}]"
                if isinstance(item.value, str):
                    p = c.string(item, where)
                    if p:
                        paths.append(self._fim_path(item, p))
                    continue
                pm = c.mapping(item, where, ("path", "recursive", "tags"), required=("path",))
                if pm is None or "path" not in pm:
                    continue
                p = c.string(pm["path"], f"{where}.path")
                rec = (c.boolean(pm["recursive"], f"{where}.recursive")
                       if "recursive" in pm else True)
                tags = c.strings(pm["tags"], f"{where}.tags") if "tags" in pm else []
                if p:
                    paths.append(FimPath(self._fim_path(pm["path"], p).path, rec is not False,
                                         tuple(tags or ())))
            kw["paths"] = tuple(paths)
        if "exclude" in m:
            ex = c.strings(m["exclude"], "fim.exclude")
            kw["exclude"] = tuple(ex) if ex is not None else None
        if "rescan_interval" in m:
            kw["rescan_interval"] = c.duration(m["rescan_interval"], "fim.rescan_interval")
        if "baseline" in m and (b := c.string(m["baseline"], "fim.baseline")):
            kw["baseline"] = Path(b)
        kw["key"] = self._key_source(m, "fim", "baseline.key")
        return FimConfig(**{k: v for k, v in kw.items() if v is not None})

    def _fim_path(self, node: Node, text: str) -> FimPath:
        p = Path(text)
        if not p.is_absolute():
            self.c.error(node.mark, f"fim path {text!r} must be absolute")
        return FimPath(p)

    def _rules(self, node: Node) -> RulesConfig:
        c = self.c
        m = c.mapping(node, "rules", ("paths", "reload_debounce"))
        if m is None:
            return RulesConfig()
        paths: tuple[Path, ...] = ()
        if "paths" in m and (items := c.seq(m["paths"], "rules.paths")) is not None:
            out = []
            for i, item in enumerate(items):
                s = c.string(item, f"rules.paths[{i}]")
                if s is None:
                    continue
                p = self._path(s)
                if not p.exists():
                    c.error(item.mark, f"rules.paths[{i}]: {p} does not exist; give a rule file"
                            " or a folder of *.yaml rule files")
                out.append(p)
            paths = tuple(out)
        debounce = 1.0
        if "reload_debounce" in m:
            debounce = c.duration(m["reload_debounce"], "rules.reload_debounce") or 1.0
        return RulesConfig(paths, debounce)

    def _lists(self, node: Node) -> tuple[dict[str, tuple[Any, ...]], dict[str, Mark]]:
        c = self.c
        if not isinstance(node.value, dict):
            c.error(node.mark, f"lists must be a mapping of name to list, got {node.value!r}")
            return {}, {}
        out: dict[str, tuple[Any, ...]] = {}
        for name, item in node.value.items():
            kmark = node.key_marks[name]
            if not _NAME.match(name):
                c.error(kmark, f"list name {name!r} is not valid; use letters, digits, '_', '-'")
                continue
            items = c.seq(item, f"lists.{name}")
            if items is None:
                continue
            vals = []
            for i, v in enumerate(items):
                if isinstance(v.value, dict | list) or v.value is None:
                    c.error(v.mark, f"lists.{name}[{i}] must be a string or number")
                else:
                    vals.append(v.value)
            out[name] = tuple(vals)
        return out, dict(node.key_marks)

    def _schedules(self, node: Node) -> dict[str, tuple[Window, ...]]:
        c = self.c
        if not isinstance(node.value, dict):
            c.error(node.mark, "schedules must be a mapping of name to a list of windows")
            return {}
        out: dict[str, tuple[Window, ...]] = {}
        for name, item in node.value.items():
            items = c.seq(item, f"schedules.{name}")
            if items is None:
                continue
            wins = []
            for i, w in enumerate(items):
                where = f"schedules.{name}[{i}]"
                wm = c.mapping(w, where, ("start", "end"), required=("start", "end"))
                if wm is None or "start" not in wm or "end" not in wm:
                    continue
                start = self._time(wm["start"], f"{where}.start")
                end = self._time(wm["end"], f"{where}.end")
                if start and end:
                    if end <= start:
                        c.error(wm["end"].mark, f"{where}: end must be after start")
                    else:
                        wins.append(Window(start, end))
            out[name] = tuple(wins)
        return out

    def _time(self, node: Node, where: str) -> datetime | None:
        v = node.value
        dt: datetime | None = None
        if isinstance(v, datetime):
            dt = v
        elif isinstance(v, str):
            try:
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                dt = None
        if dt is None or dt.tzinfo is None:
            why = "has no timezone" if dt is not None else "is not a time"
            self.c.error(node.mark, f"{where}: {v!r} {why}; valid: RFC 3339 with an offset,"
                         " e.g. \"2024-02-14T13:00:00+07:00\"")
            return None
        return dt

    def _attest(self, node: Node) -> AttestConfig:
        c = self.c
        m = c.mapping(node, "attest", ("key_file", "interval", "dir"))
        if m is None:
            return AttestConfig()
        kw: dict[str, Any] = {}
        for k in ("key_file", "dir"):
            if k in m and (s := c.string(m[k], f"attest.{k}")):
                kw[k] = Path(s).expanduser()
        if "interval" in m:
            kw["interval"] = c.duration(m["interval"], "attest.interval")
        return AttestConfig(**{k: v for k, v in kw.items() if v is not None})

    def _outputs(self, node: Node) -> OutputsConfig:
        c = self.c
        m = c.mapping(node, "outputs", ("journal", "metrics", "webhooks"))
        if m is None:
            return OutputsConfig()
        journal = self._journal(m["journal"]) if "journal" in m else JournalConfig()
        metrics = self._metrics(m["metrics"]) if "metrics" in m else MetricsConfig()
        hooks: list[WebhookConfig] = []
        if "webhooks" in m and (items := c.seq(m["webhooks"], "outputs.webhooks")) is not None:
            names: dict[str, Mark] = {}
            for i, item in enumerate(items):
                hook = self._webhook(item, f"outputs.webhooks[{i}]")
                if hook is None:
                    continue
                if hook.name in names:
                    c.error(item.mark, f"outputs.webhooks[{i}]: duplicate name {hook.name!r}"
                            f" (first at line {names[hook.name].line})")
                names[hook.name] = item.mark
                hooks.append(hook)
        return OutputsConfig(journal, metrics, tuple(hooks))

    def _journal(self, node: Node) -> JournalConfig:
        c = self.c
        keys = ("path", "fsync", "fsync_interval", "rotate_size", "key_file", "key_env")
        m = c.mapping(node, "outputs.journal", keys)
        if m is None:
            return JournalConfig()
        kw: dict[str, Any] = {}
        if "path" in m and (p := c.string(m["path"], "outputs.journal.path")):
            kw["path"] = Path(p)
        if "fsync" in m:
            kw["fsync"] = c.choice(m["fsync"], "outputs.journal.fsync",
                                   ("record", "interval", "none"))
        if "fsync_interval" in m:
            kw["fsync_interval"] = c.duration(m["fsync_interval"], "outputs.journal.fsync_interval")
        if "rotate_size" in m:
            kw["rotate_size"] = c.size(m["rotate_size"], "outputs.journal.rotate_size")
        kw["key"] = self._key_source(m, "outputs.journal", "journal.key")
        return JournalConfig(**{k: v for k, v in kw.items() if v is not None})

    def _listen(self, node: Node, where: str) -> tuple[str, int] | None:
        v = node.value
        bad = (f"{where}: {v!r} is not a listen address; valid: HOST:PORT with an IP address"
               " and a port 1-65535, e.g. 127.0.0.1:9917 or [::1]:9917")
        if not isinstance(v, str):
            self.c.error(node.mark, bad)
            return None
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", v)
        if not m:
            self.c.error(node.mark, bad)
            return None
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        if host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                self.c.error(node.mark, bad)
                return None
        if not 1 <= port <= 65535:
            self.c.error(node.mark, bad)
            return None
        return (host, port)

    def _metrics(self, node: Node) -> MetricsConfig:
        c = self.c
        m = c.mapping(node, "outputs.metrics", ("listen", "enabled", "tls", "basic_auth"))
        if m is None:
            return MetricsConfig()
        kw: dict[str, Any] = {}
        if "listen" in m:
            kw["listen"] = self._listen(m["listen"], "outputs.metrics.listen")
        if "enabled" in m:
            kw["enabled"] = c.boolean(m["enabled"], "outputs.metrics.enabled")
        if "tls" in m:
            tm = c.mapping(m["tls"], "outputs.metrics.tls",
                           ("cert_file", "key_file", "client_ca_file"),
                           required=("cert_file", "key_file"))
            if tm is not None and "cert_file" in tm and "key_file" in tm:
                cert = self._readable(tm["cert_file"], "outputs.metrics.tls.cert_file")
                key = self._readable(tm["key_file"], "outputs.metrics.tls.key_file")
                ca = (self._readable(tm["client_ca_file"], "outputs.metrics.tls.client_ca_file")
                      if "client_ca_file" in tm else None)
                if cert and key:
                    kw["tls"] = TLSServerConfig(cert, key, ca)
        if "basic_auth" in m:
            bm = c.mapping(m["basic_auth"], "outputs.metrics.basic_auth", ("users",),
                           required=("users",))
            if bm is not None and "users" in bm:
                un = bm["users"]
                if not isinstance(un.value, dict):
                    c.error(un.mark, "outputs.metrics.basic_auth.users must map user names to"
                            " bcrypt hashes")
                else:
                    users = []
                    for user, hnode in un.value.items():
                        h = c.string(hnode, f"outputs.metrics.basic_auth.users.{user}")
                        if h is not None and not re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}",
                                                              h):
                            c.error(hnode.mark, f"outputs.metrics.basic_auth.users.{user}: not a"
                                    " bcrypt hash; valid: $2b$12$... (make one with"
                                    " `python3 -c 'import bcrypt; print(bcrypt.hashpw(b\"PW\","
                                    " bcrypt.gensalt()).decode())'`)")
                        elif h is not None:
                            users.append((user, h))
                    kw["basic_auth"] = tuple(users)
        return MetricsConfig(**{k: v for k, v in kw.items() if v is not None})

    def _readable(self, node: Node, where: str) -> Path | None:
        s = self.c.string(node, where)
        if s is None:
            return None
        p = self._path(s)
        try:
            with p.open("rb"):
                pass
        except OSError as exc:
            self.c.error(node.mark, f"{where}: cannot read {p}: {exc.strerror}")
            return None
        return p

    def _url(self, node: Node, where: str) -> str | None:
        s = self.c.string(node, where)
        if s is None:
            return None
        parts = urlsplit(s)
        try:
            port_ok = parts.port is None or 1 <= parts.port <= 65535
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            self.c.error(node.mark, f"{where}: {s!r} is not a URL; valid: https://HOST[:PORT]/PATH"
                         " (or http:// for a receiver on a trusted network)")
            return None
        if parts.username or parts.password:
            self.c.error(node.mark, f"{where}: credentials in the URL are not allowed;"
                         " use secret_env/secret_file or headers")
            return None
        return s

    def _webhook(self, node: Node, where: str) -> WebhookConfig | None:
        c = self.c
        keys = ("name", "url", "format", "min_severity", "include_tags", "exclude_tags",
                "include_rules", "exclude_rules", "secret_env", "secret_file", "headers",
                "timeout", "tls", "retry", "resend_interval", "resolve_after")
        m = c.mapping(node, where, keys, required=("name", "url"))
        if m is None or "name" not in m or "url" not in m:
            return None
        name = c.string(m["name"], f"{where}.name")
        if name is not None and not _NAME.match(name):
            c.error(m["name"].mark, f"{where}.name: {name!r} must start with a letter and use"
                    " letters, digits, '_', '-', '.'")
        fmt = c.choice(m["format"], f"{where}.format", ("json", "alertmanager")) \
            if "format" in m else "json"
        urls: list[str] = []
        unode = m["url"]
        url_items = unode.value if isinstance(unode.value, list) else [unode]
        if isinstance(unode.value, list) and fmt == "json" and len(url_items) > 1:
            c.error(unode.mark, f"{where}.url: a json webhook takes one URL; a list of URLs is"
                    " for format: alertmanager (an HA cluster)")
        for i, item in enumerate(url_items):
            suffix = f"[{i}]" if isinstance(unode.value, list) else ""
            u = self._url(item, f"{where}.url{suffix}")
            if u:
                urls.append(u)
        kw: dict[str, Any] = {}
        if "min_severity" in m:
            kw["min_severity"] = c.choice(m["min_severity"], f"{where}.min_severity", SEVERITIES)
        for k in ("include_tags", "exclude_tags", "include_rules", "exclude_rules"):
            if k in m and (vals := c.strings(m[k], f"{where}.{k}")) is not None:
                kw[k] = tuple(vals)
        kw["secret"] = self._secret(m, where, fmt)
        if "headers" in m:
            hn = m["headers"]
            if not isinstance(hn.value, dict):
                c.error(hn.mark, f"{where}.headers must map header names to values")
            else:
                hs = []
                for h, hv in hn.value.items():
                    if not _HEADER.match(h):
                        c.error(hn.key_marks[h], f"{where}.headers: {h!r} is not a header name")
                    val = c.string(hv, f"{where}.headers.{h}")
                    if val is not None:
                        hs.append((h, val))
                kw["headers"] = tuple(hs)
        if "timeout" in m:
            kw["timeout"] = c.duration(m["timeout"], f"{where}.timeout")
        for k in ("resend_interval", "resolve_after"):
            if k in m:
                kw[k] = c.duration(m[k], f"{where}.{k}")
        if "tls" in m:
            tm = c.mapping(m["tls"], f"{where}.tls", ("verify", "ca_file", "cert_file", "key_file"))
            if tm is not None:
                if "verify" in tm:
                    kw["verify_tls"] = c.boolean(tm["verify"], f"{where}.tls.verify")
                if "ca_file" in tm:
                    kw["ca_file"] = self._readable(tm["ca_file"], f"{where}.tls.ca_file")
                if "cert_file" in tm:
                    kw["client_cert"] = self._readable(tm["cert_file"], f"{where}.tls.cert_file")
                if "key_file" in tm:
                    kw["client_key"] = self._readable(tm["key_file"], f"{where}.tls.key_file")
                if ("cert_file" in tm) != ("key_file" in tm):
                    c.error(m["tls"].mark, f"{where}.tls: cert_file and key_file go together")
        if "retry" in m:
            rm = c.mapping(m["retry"], f"{where}.retry", ("initial", "max"))
            if rm is not None:
                if "initial" in rm:
                    kw["retry_initial"] = c.duration(rm["initial"], f"{where}.retry.initial")
                if "max" in rm:
                    kw["retry_max"] = c.duration(rm["max"], f"{where}.retry.max")
        if name is None or fmt is None or len(urls) != len(url_items):
            return None
        return WebhookConfig(name=name, urls=tuple(urls), format=fmt,
                             **{k: v for k, v in kw.items() if v is not None})

    def _secret(self, m: dict[str, Node], where: str, fmt: str | None) -> Secret | None:
        c = self.c
        env, file_ = m.get("secret_env"), m.get("secret_file")
        if env is not None and file_ is not None:
            c.error(file_.mark, f"{where}: give secret_env or secret_file, not both")
            return None
        secret: Secret | None = None
        if env is not None:
            var = c.string(env, f"{where}.secret_env")
            if var is None:
                return None
            value = os.environ.get(var, "")
            if not value:
                c.error(env.mark, f"{where}.secret_env: environment variable {var} is not set")
                return None
            secret, mark = Secret(value.strip(), f"env {var}"), env.mark
        elif file_ is not None:
            s = c.string(file_, f"{where}.secret_file")
            if s is None:
                return None
            p = self._path(s)
            try:
                value = p.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                c.error(file_.mark, f"{where}.secret_file: cannot read {p}: {why}")
                return None
            if not value:
                c.error(file_.mark, f"{where}.secret_file: {p} is empty")
                return None
            secret, mark = Secret(value, f"file {p}"), file_.mark
        if secret is not None and fmt == "json" and not _valid_whsec(secret.reveal()):
            c.error(mark, f"{where}: the secret from {secret.origin} is not a webhook secret;"
                    " valid: whsec_ followed by base64 of 24 to 64 random bytes")
            return None
        return secret


def _valid_whsec(value: str) -> bool:
    if not value.startswith("whsec_"):
        return False
    try:
        raw = base64.b64decode(value[6:], validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(raw) <= 64

