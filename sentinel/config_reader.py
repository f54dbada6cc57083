"""Reads the configuration's YAML tree into the dataclasses of :mod:`sentinel.config`.

Every fault becomes a positioned problem in one :class:`~sentinel.located.Checker`,
so that all of a file's faults are reported together. The ``outputs`` section is
read by :mod:`sentinel.config_outputs`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from sentinel.config import (
    AttestConfig,
    AttributionConfig,
    AuthConfig,
    Config,
    DeviceConfig,
    FimConfig,
    FimPath,
    HostConfig,
    IPAddress,
    IPNetwork,
    KeySource,
    NetworkConfig,
    OutputsConfig,
    RulesConfig,
    StormConfig,
    Window,
)
from sentinel.config_host import read_attribution, read_auth, read_devices
from sentinel.config_outputs import NAME, OutputsReader
from sentinel.events import SOURCES
from sentinel.located import Checker, Mark, Node, Problem, load, type_name

EVENT_SOURCES = tuple(dict.fromkeys(SOURCES.values()))
TOP_KEYS = ("host", "state_dir", "network", "fim", "rules", "lists", "schedules", "outputs",
            "attest", "language", "timezone", "auth", "devices", "attribution")



class ConfigReader:
    """Walks the YAML tree, converting and checking each section."""

    def __init__(self, path: Path, secrets: bool = True) -> None:
        self.path = path
        self.secrets = secrets
        self.base = path.resolve().parent
        self.c = Checker()
        self.warnings: list[Problem] = []
        self.list_item_marks: dict[str, tuple[Mark, ...]] = {}

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
        item_marks = self.list_item_marks
        schedules = self._schedules(top["schedules"]) if "schedules" in top else {}
        outputs = (OutputsReader(c, self._path, self._key_source, self.secrets).read(top["outputs"])
                   if "outputs" in top else OutputsConfig())
        attest = self._attest(top["attest"]) if "attest" in top else AttestConfig()
        language, timezone = self._display(top)
        auth = read_auth(c, top["auth"], self.warnings) if "auth" in top else AuthConfig()
        devices = read_devices(c, top["devices"]) if "devices" in top else DeviceConfig()
        attribution = (read_attribution(c, top["attribution"]) if "attribution" in top
                       else AttributionConfig())
        if attribution.connections and not network.interfaces:
            self.warnings.append(Problem(
                top["attribution"].mark, "warning: attribution.connections: no"
                " network.interfaces to capture on; connections are attributed on live"
                " capture only, so this names no process"))
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
            list_item_marks=item_marks,
            schedules=schedules,
            outputs=outputs,
            attest=attest,
            auth=auth,
            devices=devices,
            attribution=attribution,
            language=language,
            timezone=timezone,
            warnings=tuple(self.warnings),
        )

    def _display(self, top: dict[str, Node]) -> tuple[str, str]:
        """``language`` and ``timezone``: how alerts, reports and check show themselves."""
        from sentinel.i18n import DEFAULT_LANGUAGE, DEFAULT_TIMEZONE, LANGUAGES, zone

        language = DEFAULT_LANGUAGE
        if "language" in top:
            language = self.c.choice(top["language"], "language", LANGUAGES) or language
        timezone = DEFAULT_TIMEZONE
        if "timezone" in top and (name := self.c.string(top["timezone"], "timezone")):
            try:
                zone(name)
                timezone = name
            except ValueError as exc:
                self.c.error(top["timezone"].mark, f"timezone: {exc}")
        return language, timezone

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
                net = ipaddress.ip_network(node.value, strict=False)
            except ValueError:
                pass
            else:
                host = node.value.strip().partition("/")[0]
                if net.network_address != ipaddress.ip_address(host):
                    # refused, not normalised: the network and the host differ widely
                    self.c.error(node.mark, f"{where}: {node.value!r} has host bits set; write"
                                 f" the network {net} or the single address {host}")
                    return None
                return net
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
                "flow_interval", "max_flows", "quiet_after")
        m = c.mapping(node, "network", keys)
        if m is None:
            return NetworkConfig()
        kw: dict[str, Any] = {}
        if "interfaces" in m and (ifs := c.strings(m["interfaces"], "network.interfaces")):
            for i, (iface, inode) in enumerate(zip(ifs, m["interfaces"].value, strict=True)):
                if len(iface) > 15 or "/" in iface or " " in iface:
                    c.error(inode.mark, f"network.interfaces[{i}]: {iface!r} is not an interface"
                            " name (at most 15 characters, no '/' or spaces), or 'any'")
                elif iface != "any" and not _interface_exists(iface):
                    self.warnings.append(Problem(
                        inode.mark, f"warning: network.interfaces[{i}]: there is no interface"
                        f" {iface!r} on this host; the daemon would report the capture down"
                        " until it appears. Interfaces here: " + ", ".join(_interfaces())))
            kw["interfaces"] = tuple(ifs)
        if "home_nets" in m and (items := c.seq(m["home_nets"], "network.home_nets")):
            nets = [self._cidr(n, f"network.home_nets[{i}]") for i, n in enumerate(items)]
            kw["home_nets"] = tuple(n for n in nets if n is not None)
        if "snaplen" in m:
            kw["snaplen"] = c.integer(m["snaplen"], "network.snaplen", 64, 65535)
        if "buffer_size" in m:
            kw["buffer_size"] = c.size(m["buffer_size"], "network.buffer_size")
        for k in ("flow_timeout", "flow_interval", "quiet_after"):
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
        m = c.mapping(node, "rules", ("paths", "reload_debounce", "storm"))
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
        storm = self._storm(m["storm"]) if "storm" in m else StormConfig()
        return RulesConfig(paths, debounce, storm)

    def _storm(self, node: Node) -> StormConfig:
        c = self.c
        m = c.mapping(node, "rules.storm", ("max_alerts", "period", "sample", "sources"))
        d = StormConfig()
        if m is None:
            return d
        top = c.integer(m["max_alerts"], "rules.storm.max_alerts", 1) if "max_alerts" in m else None
        period = c.duration(m["period"], "rules.storm.period") if "period" in m else None
        sample = c.integer(m["sample"], "rules.storm.sample", 0, 100) if "sample" in m else None
        sources = d.sources
        if "sources" in m and (items := c.strings(m["sources"], "rules.storm.sources")) is not None:
            for i, name in enumerate(items):
                if name not in EVENT_SOURCES:
                    c.error(m["sources"].value[i].mark, f"rules.storm.sources[{i}]: {name!r}"
                            " is not an event source; valid: " + ", ".join(EVENT_SOURCES))
            sources = frozenset(items)
        return StormConfig(top or d.max_alerts, period or d.period,
                           d.sample if sample is None else sample, sources)

    def _lists(self, node: Node) -> tuple[dict[str, tuple[Any, ...]], dict[str, Mark]]:
        c = self.c
        if not isinstance(node.value, dict):
            c.error(node.mark, f"lists must be a mapping of name to list, got {node.value!r}")
            return {}, {}
        out: dict[str, tuple[Any, ...]] = {}
        for name, item in node.value.items():
            kmark = node.key_marks[name]
            if not NAME.match(name):
                c.error(kmark, f"list name {name!r} is not valid; use letters, digits, '_', '-'")
                continue
            items = c.seq(item, f"lists.{name}")
            if items is None:
                continue
            vals = []
            marks = []
            for i, v in enumerate(items):
                if isinstance(v.value, dict | list) or v.value is None:
                    c.error(v.mark, f"lists.{name}[{i}] must be a string or number")
                else:
                    vals.append(v.value)
                    marks.append(v.mark)
            out[name] = tuple(vals)
            self.list_item_marks[name] = tuple(marks)
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


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def load_config(path: Path, secrets: bool = True) -> Config:
    """Read ``path`` and return a validated :class:`Config`, or raise ProblemError.

    ``secrets=False`` is for commands that never send (baseline, journal verify,
    report, attest, delivery status, replay without --deliver): the webhooks'
    ``secret_env``/``secret_file`` are checked for shape but not read, so a
    responder needs neither root's secrets file nor the daemon's environment.
    Their ``secret`` is then None; such a config must not be used to send.
    """
    root = load(path)
    return ConfigReader(path, secrets=secrets).read(root)
