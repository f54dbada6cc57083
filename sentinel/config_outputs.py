"""Reads the ``outputs`` section: journal, metrics endpoint and webhooks (with secrets)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sentinel.alert import SEVERITIES
from sentinel.config import (
    JournalConfig,
    KeySource,
    MetricsConfig,
    OutputsConfig,
    Secret,
    TLSServerConfig,
    WebhookConfig,
)
from sentinel.located import Checker, Mark, Node

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class OutputsReader:
    """The ``outputs`` part of :class:`~sentinel.config_reader.ConfigReader`."""

    def __init__(
        self,
        checker: Checker,
        path_of: Callable[[str], Path],
        key_source: Callable[[dict[str, Node], str, str], KeySource],
        secrets: bool = True,
    ) -> None:
        self.c = checker
        self.secrets = secrets
        self._path = path_of
        self._key_source = key_source

    def read(self, node: Node) -> OutputsConfig:
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

    def _proxy(self, node: Node, where: str) -> str | None:
        s = self.c.string(node, where)
        if s is None:
            return None
        parts = urlsplit(s)
        try:
            port_ok = parts.port is not None and 1 <= parts.port <= 65535
        except ValueError:
            port_ok = False
        if (parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
                or parts.path not in ("", "/") or parts.query or parts.fragment):
            self.c.error(node.mark, f"{where}: {s!r} is not a proxy address; valid:"
                         " http://HOST:PORT (or https://HOST:PORT for a TLS proxy)")
            return None
        if parts.username or parts.password:
            self.c.error(node.mark, f"{where}: credentials in the proxy URL are not allowed;"
                         " put user:password in the variable proxy_auth_env names")
            return None
        return s.rstrip("/")

    def _proxy_auth(self, m: dict[str, Node], where: str) -> Secret | None:
        c = self.c
        node = m["proxy_auth_env"]
        var = c.string(node, f"{where}.proxy_auth_env")
        if "proxy" not in m:
            c.error(node.mark, f"{where}.proxy_auth_env goes with proxy")
            return None
        if var is None or not self.secrets:
            return None
        value = os.environ.get(var, "").strip()
        if ":" not in value:
            c.error(node.mark, f"{where}.proxy_auth_env: environment variable {var} must hold"
                    " user:password" + ("" if value else " (it is not set)"))
            return None
        return Secret(value, f"env {var}")

    def _webhook(self, node: Node, where: str) -> WebhookConfig | None:
        c = self.c
        keys = ("name", "url", "format", "min_severity", "include_tags", "exclude_tags",
                "include_rules", "exclude_rules", "secret_env", "secret_file", "headers",
                "timeout", "tls", "retry", "resend_interval", "resolve_after", "language",
                "heartbeat", "proxy", "proxy_auth_env")
        m = c.mapping(node, where, keys, required=("name", "url"))
        if m is None or "name" not in m or "url" not in m:
            return None
        name = c.string(m["name"], f"{where}.name")
        if name is not None and not NAME.match(name):
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
        for k in ("resend_interval", "resolve_after", "heartbeat"):
            if k in m:
                # heartbeat: 0s switches off the alertmanager format's default one
                kw[k] = c.duration(m[k], f"{where}.{k}", positive=k != "heartbeat")
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
        if "language" in m:
            from sentinel.i18n import LANGUAGES

            kw["language"] = c.choice(m["language"], f"{where}.language", LANGUAGES)
        if "proxy" in m:
            kw["proxy"] = self._proxy(m["proxy"], f"{where}.proxy")
        if "proxy_auth_env" in m:
            kw["proxy_auth"] = self._proxy_auth(m, where)
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
        if not self.secrets:
            # a command that never sends: the shape is checked, the secret is not read
            for node, key in ((env, "secret_env"), (file_, "secret_file")):
                if node is not None:
                    c.string(node, f"{where}.{key}")
            return None
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
