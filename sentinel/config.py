"""Load and validate the YAML configuration into frozen dataclasses (CONTRACT §2).

Every fault is a :class:`~sentinel.located.Problem` at the position of the
offending key or value; all of a file's faults are raised together in one
:class:`~sentinel.located.ProblemError`. Nothing falls back to a default when
a value is wrong.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from sentinel.located import Mark, Problem

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
    #: An interface that saw packets and then none for this long is "quiet" (an alert).
    quiet_after: float = 300.0


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
    key: KeySource = KeySource(file=Path("baseline.key"))


@dataclass(frozen=True)
class StormConfig:
    """Storm control: past ``max_alerts`` alerts of one rule in ``period`` seconds, the
    rest fold into one summary per period (true count, a sample of keys).

    Suppression keyed by source cannot hold back spoofed sources; this can, since
    it counts a rule's alerts whatever their keys. ``sources`` are the event
    sources it applies to: by default only network, whose volume an attacker on
    the wire sets at no cost; every file change keeps its own alert.
    """

    max_alerts: int = 100
    period: float = 60.0
    sample: int = 10
    sources: frozenset[str] = frozenset({"network"})


@dataclass(frozen=True)
class RulesConfig:
    paths: tuple[Path, ...] = ()
    reload_debounce: float = 1.0
    storm: StormConfig = StormConfig()


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
    key: KeySource = KeySource(file=Path("journal.key"))


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
    #: the language of this recipient's titles and descriptions; None: the site's
    language: str | None = None
    #: Send a heartbeat this often; None: the format's default (alertmanager 1m, json
    #: never), 0: never. See sentinel.selfwatch.heartbeat.
    heartbeat: float | None = None
    #: An HTTP(S) proxy every request of this target goes through (http://HOST:PORT);
    #: None: straight to the receiver. Environment proxies are never used.
    proxy: str | None = None
    #: "user:password" for the proxy's basic authentication, from proxy_auth_env
    proxy_auth: Secret | None = None


@dataclass(frozen=True)
class OutputsConfig:
    journal: JournalConfig = JournalConfig()
    metrics: MetricsConfig = MetricsConfig()
    webhooks: tuple[WebhookConfig, ...] = ()


@dataclass(frozen=True)
class AuthConfig:
    """Where login and privilege records are read (sentinel.sources.auth); off by default."""

    #: follow the systemd journal through ``journalctl -o json -f``
    journal: bool = False
    #: syslog files (rsyslog's /var/log/auth.log) followed across rotation
    files: tuple[Path, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.journal or bool(self.files)


@dataclass(frozen=True)
class DeviceConfig:
    """Kernel device events (sentinel.sources.device); off by default."""

    enabled: bool = False
    #: subsystems reported; others (input, power_supply...) are dropped at the source
    subsystems: tuple[str, ...] = ("block", "usb", "scsi")
    #: mount.added / mount.removed from the mount table
    mounts: bool = True


@dataclass(frozen=True)
class AttributionConfig:
    """Who did it: the process behind file changes and connections; off by default.

    ``files``: "audit" asks the kernel's audit subsystem for a record of each
    change to a watched path (sentinel.sources.audit), "off" does not.
    ``connections``: resolve the local end of a connection to its process
    (sentinel.sources.net.owner).
    """

    files: str = "off"
    connections: bool = False


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
    #: where each item of each list stands, so a bad entry is reported at itself
    list_item_marks: dict[str, tuple[Mark, ...]] = field(default_factory=dict)
    schedules: dict[str, tuple[Window, ...]] = field(default_factory=dict)
    outputs: OutputsConfig = OutputsConfig()
    attest: AttestConfig = AttestConfig()
    auth: AuthConfig = AuthConfig()
    devices: DeviceConfig = DeviceConfig()
    attribution: AttributionConfig = AttributionConfig()
    #: What is valid but suspect on this host (an interface that does not exist here):
    #: ``check`` prints them and still exits 0; the daemon reports the effect as it runs.
    warnings: tuple[Problem, ...] = ()
    #: en | id: the language of titles, descriptions and the report (sentinel.i18n)
    language: str = "en"
    #: IANA zone of times shown to people; the journal and signed records stay UTC
    timezone: str = "UTC"
    #: Addresses the kernel gives the capture interfaces that host.addresses did not
    #: list, added to it and to the tally_server list by the daemon (sentinel.hostinfo)
    learned_addresses: tuple[IPAddress, ...] = ()
    #: Next hops of the capture interfaces' default routes that the gateway_ip list
    #: did not name, added to it by the daemon (sentinel.hostinfo)
    learned_gateways: tuple[IPAddress, ...] = ()

    def display_zone(self) -> tzinfo:
        """The zone of :attr:`timezone` (validated when the config was read)."""
        from sentinel.i18n import zone

        return zone(self.timezone)

    def in_state(self, p: Path) -> Path:
        """Resolve an output path against ``state_dir``."""
        return p if p.is_absolute() else self.state_dir / p
