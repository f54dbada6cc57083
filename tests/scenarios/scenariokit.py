"""Helpers for the rule-pack scenarios: the reference site's traffic built with scapy,
`sentinel replay` / `sentinel baseline` run as an operator runs them, and a FIM
config derived from config.example.yaml with its watched paths moved under a
temporary root.

Addresses are those of the reference site (CONTRACT §7). Every packet goes to
a capture file; nothing is sent on any interface.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.ntp import NTP
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

from sentinel.config_reader import load_config
from sentinel.engine import Engine, load_rules
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.fim import FimSource, build_fim_source
from tests.conftest import EXAMPLE_SECRETS, REPO

EXAMPLE_CONFIG = REPO / "config.example.yaml"
SENTINEL = str(Path(sys.executable).parent / "sentinel")

TALLY, TALLY_MAC = "10.20.0.10", "02:00:00:00:00:10"
GATEWAY, GATEWAY_MAC = "10.20.0.1", "02:00:00:00:00:01"
DNS_SERVER, NTP_SERVER = "10.20.0.2", "10.20.0.3"
APP_SERVER, ADMIN = "10.20.0.11", "10.20.1.5"
CENTRAL = "203.0.113.50"
#: 2024-02-14 14:00 in Jakarta: inside the reference site's counting window.
T0 = datetime.fromisoformat("2024-02-14T14:00:00+07:00").timestamp()
BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac_of(ip: str) -> str:
    """The MAC a frame to or from ``ip`` carries on the tally server's segment."""
    if ip == TALLY:
        return TALLY_MAC
    if ip == GATEWAY or not ip.startswith("10.20.0."):
        return GATEWAY_MAC  # off-segment hosts are reached through the gateway
    last = int(ip.rsplit(".", 1)[1])
    return f"02:00:00:00:01:{last:02x}"


@dataclass
class Capture:
    """Frames with their times (and wire lengths, for frames cut by the snaplen)."""

    frames: list[tuple[float, bytes, int]] = field(default_factory=list)

    def add(self, t: float, pkt: Packet, wirelen: int | None = None, snap: int = 0) -> None:
        raw = bytes(pkt)
        self.frames.append((t, raw[:snap] if snap else raw, wirelen or len(raw)))

    def ip(self, t: float, src: str, dst: str, l4: Packet, **ip_kw: Any) -> None:
        self.add(t, Ether(src=mac_of(src), dst=mac_of(dst)) / IP(src=src, dst=dst, **ip_kw) / l4)

    def write(self, path: Path) -> Path:
        w = PcapWriter(str(path), linktype=1, snaplen=65535, sync=False)
        w.write_header(None)
        for t, raw, wirelen in sorted(self.frames, key=lambda f: f[0]):
            w.write_packet(raw, sec=t, usec=round((t - int(t)) * 1e6), wirelen=wirelen)
        w.close()
        return path

    # -- TCP ---------------------------------------------------------------------

    def syn(self, t: float, src: str, sport: int, dst: str, dport: int) -> None:
        self.ip(t, src, dst, TCP(sport=sport, dport=dport, flags="S", seq=1000))

    def tcp_session(self, t: float, client: str, cport: int, server: str, sport: int,
                    up: int = 400, down: int = 1200, close: bool = True) -> float:
        """A complete conversation: handshake, a request and a reply, both FINs.

        Returns the time of its last packet.
        """
        self.syn(t, client, cport, server, sport)
        self.ip(t + 0.001, server, client, TCP(sport=sport, dport=cport, flags="SA", seq=5000,
                                               ack=1001))
        self.ip(t + 0.002, client, server, TCP(sport=cport, dport=sport, flags="A", seq=1001,
                                               ack=5001))
        self._data(t + 0.010, client, cport, server, sport, 1001, 5001, up, b"q")
        self._data(t + 0.050, server, sport, client, cport, 5001, 1001 + up, down, b"r")
        if not close:
            return t + 0.050
        self.ip(t + 0.060, client, server, TCP(sport=cport, dport=sport, flags="FA",
                                               seq=1001 + up, ack=5001 + down))
        self.ip(t + 0.061, server, client, TCP(sport=sport, dport=cport, flags="FA",
                                               seq=5001 + down, ack=1002 + up))
        self.ip(t + 0.062, client, server, TCP(sport=cport, dport=sport, flags="A",
                                               seq=1002 + up, ack=5002 + down))
        return t + 0.062

    def _data(self, t: float, src: str, sport: int, dst: str, dport: int, seq: int, ack: int,
              size: int, fill: bytes) -> None:
        """``size`` bytes as full-sized segments (1448 bytes of payload each)."""
        sent = 0
        while sent < size:
            n = min(1448, size - sent)
            self.ip(t + sent * 1e-8, src, dst, TCP(sport=sport, dport=dport, flags="PA",
                                                   seq=seq + sent, ack=ack) / Raw(fill * n))
            sent += n

    def refused(self, t: float, client: str, cport: int, server: str, sport: int) -> None:
        """A SYN answered by a reset: nothing listens on ``sport``."""
        self.syn(t, client, cport, server, sport)
        self.ip(t + 0.001, server, client, TCP(sport=sport, dport=cport, flags="RA", seq=0,
                                               ack=1001))

    def bulk(self, t: float, src: str, sport: int, dst: str, dport: int, total: int,
             seconds: float, frame: int = 65000, opened_by_dst: bool = False) -> float:
        """``total`` bytes from ``src`` over ``seconds`` after a handshake (``src``'s, or
        with ``opened_by_dst`` the peer's), in large segmentation-offloaded frames (as a
        capture on the sending host sees them), stored cut at 256 bytes. Returns the
        time of the last frame."""
        if opened_by_dst:
            self.syn(t, dst, dport, src, sport)
            self.ip(t + 0.001, src, dst, TCP(sport=sport, dport=dport, flags="SA", seq=5000,
                                             ack=1001))
        else:
            self.syn(t, src, sport, dst, dport)
            self.ip(t + 0.001, dst, src, TCP(sport=dport, dport=sport, flags="SA", seq=5000,
                                             ack=1001))
        n = max(1, total // frame)
        step = seconds / n
        seq = 1001
        eth = Ether(src=mac_of(src), dst=mac_of(dst))
        for i in range(n):
            ts = t + 0.002 + i * step
            pkt = eth / IP(src=src, dst=dst, len=frame - 14) / TCP(
                sport=sport, dport=dport, flags="A", seq=seq, ack=5001) / Raw(b"d" * 200)
            self.add(ts, pkt, wirelen=frame, snap=256)
            seq = (seq + frame - 54) % 2**32
        return t + 0.002 + n * step

    # -- UDP, DNS, NTP, ICMP, ARP -----------------------------------------------------

    def dns(self, t: float, client: str, qname: str, qtype: str = "A", sport: int = 40000,
            answer: str | None = "10.20.0.200", server: str = DNS_SERVER) -> None:
        """A query from ``client`` and the resolver's answer."""
        qid = (sport * 7) % 65536
        self.ip(t, client, server, UDP(sport=sport, dport=53) / DNS(
            id=qid, rd=1, qd=DNSQR(qname=qname, qtype=qtype)))
        an = [DNSRR(rrname=qname, type="A", rdata=answer)] if answer and qtype == "A" else []
        self.ip(t + 0.002, server, client, UDP(sport=53, dport=sport) / DNS(
            id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=qname, qtype=qtype), an=an))

    def ntp(self, t: float, client: str = TALLY, server: str = NTP_SERVER) -> None:
        self.ip(t, client, server, UDP(sport=123, dport=123) / NTP(mode=3))
        self.ip(t + 0.001, server, client, UDP(sport=123, dport=123) / NTP(mode=4))

    def ping(self, t: float, src: str, dst: str, reply: bool = True) -> None:
        self.ip(t, src, dst, ICMP(type=8, id=7, seq=int(t) % 65536))
        if reply:
            self.ip(t + 0.001, dst, src, ICMP(type=0, id=7, seq=int(t) % 65536))

    def arp_request(self, t: float, mac: str, ip: str, target: str) -> None:
        self.add(t, Ether(src=mac, dst=BROADCAST) / ARP(op=1, hwsrc=mac, psrc=ip,
                                                        hwdst="00:00:00:00:00:00", pdst=target))

    def arp_reply(self, t: float, mac: str, ip: str, to_mac: str, to_ip: str) -> None:
        self.add(t, Ether(src=mac, dst=to_mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=to_mac,
                                                     pdst=to_ip))


def example_env() -> dict[str, str]:
    """The environment for the CLI: the example webhook secrets the example config needs."""
    return {**os.environ, **EXAMPLE_SECRETS}


def sentinel(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as an operator would."""
    return subprocess.run([SENTINEL, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=example_env())


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def replay(pcap: Path, *extra: str, config: Path = EXAMPLE_CONFIG) -> list[dict[str, Any]]:
    """Alerts (or with --events, events) of `sentinel replay PCAP -c config.example.yaml`."""
    done = sentinel("replay", pcap, "-c", config, *extra)
    assert done.returncode == 0, done.stderr
    return json_lines(done.stdout)


# -- file integrity --------------------------------------------------------------------


#: What the reference site's watched paths hold before the scenarios start.
SEED_FILES: dict[str, tuple[bytes, int]] = {
    "/opt/tally/bin/tally": (b"\x7fELF tally counting program v1\n", 0o755),
    "/opt/tally/bin/tally-export": (b"\x7fELF tally export v1\n", 0o755),
    "/etc/tally/app.conf": (b"central = https://203.0.113.50/upload\nthreshold = 5\n", 0o640),
    "/etc/tally/ca.pem": (b"-----BEGIN CERTIFICATE-----\nMIIB\n", 0o644),
    "/var/lib/tally/results/tps-001.json": (b'{"tps": 1, "a": 120, "b": 98}\n', 0o644),
    "/var/lib/tally/results/tps-002.json": (b'{"tps": 2, "a": 77, "b": 130}\n', 0o644),
    "/etc/passwd": (b"root:x:0:0:root:/root:/bin/bash\n"
                    b"tally:x:998:998::/opt/tally:/usr/sbin/nologin\n", 0o644),
    "/etc/shadow": (b"root:!:19700:0:99999:7:::\ntally:!:19700::::::\n", 0o640),
    "/etc/group": (b"root:x:0:\ntally:x:998:\n", 0o644),
    "/etc/sudoers": (b"root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n", 0o440),
    "/etc/sudoers.d/README": (b"# drop-in sudo rules\n", 0o440),
    "/etc/ssh/sshd_config": (b"PermitRootLogin prohibit-password\nPasswordAuthentication no\n",
                             0o644),
    "/root/.ssh/authorized_keys": (b"ssh-ed25519 AAAAC3Nza admin@kpu\n", 0o600),
    "/etc/cron.d/e2scrub_all": (b"30 3 * * 0 root /sbin/e2scrub_all\n", 0o644),
    "/etc/systemd/system/tally.service": (b"[Service]\nExecStart=/opt/tally/bin/tally\n", 0o644),
}


class FimSite:
    """The reference site's watched tree under ``root``, and a config that watches it.

    The config is config.example.yaml with every fim path re-rooted under ``root``
    (same tags), ``state_dir`` and the baseline key in the temporary directory, and
    the same lists, schedules and rule pack.
    """

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.state = tmp / "state"
        self.config = tmp / "config.yaml"
        for rel, (data, mode) in SEED_FILES.items():
            p = self.at(rel)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            p.chmod(mode)
        self.config.write_text(yaml.safe_dump(self.derive(), sort_keys=False))

    def at(self, path: str) -> Path:
        """Where the site path ``path`` (e.g. /etc/passwd) lives in this tree."""
        return self.root / path.lstrip("/")

    def site_path(self, p: Path | str) -> str:
        """The reference-site path of a path in this tree (for messages)."""
        return "/" + str(Path(p).relative_to(self.root))

    def derive(self) -> dict[str, Any]:
        cfg: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
        fim = cfg["fim"]
        for entry in fim["paths"]:
            entry["path"] = str(self.at(entry["path"]))
        fim["key_file"] = str(self.state.parent / "keys" / "baseline.key")
        cfg["state_dir"] = str(self.state)
        cfg["rules"]["paths"] = [str(REPO / p) for p in cfg["rules"]["paths"]]
        cfg["outputs"] = {"metrics": {"enabled": False}}
        cfg.pop("attest", None)
        return cfg

    def init(self) -> None:
        done = sentinel("baseline", "init", "-c", self.config)
        assert done.returncode == 0, done.stderr

    def verify(self) -> tuple[int, list[dict[str, Any]], str]:
        done = sentinel("baseline", "verify", "-c", self.config)
        return done.returncode, json_lines(done.stdout), done.stderr


def by_path(alerts: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        out.setdefault(a["event"].get("path", ""), []).append(a)
    return out


class Live:
    """The FIM source on a site tree, live, with the pack's engine over its events."""

    def __init__(self, site: FimSite, clock_at: float | None = None) -> None:
        self.site = site
        self.config = load_config(site.config)
        self.engine = Engine(load_rules(self.config), host=self.config.host.name)
        self._lock = threading.Lock()
        self.events: list[Event] = []
        clock = (lambda: clock_at) if clock_at is not None else time.time
        src = build_fim_source(self.config, Metrics(), clock)
        assert src is not None
        self.source: FimSource = src
        self._marks = 0

    def emit(self, ev: Event) -> None:
        with self._lock:
            self.events.append(ev)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def barrier(self) -> None:
        """Wait (bounded) until every change made so far has been reported: a marker
        file's own event comes after them, then the source holds nothing back."""
        self._marks += 1
        mark = self.site.at(f"/var/lib/tally/results/zz-marker-{self._marks}.json")
        mark.write_bytes(b"{}\n")
        deadline = time.monotonic() + 10
        while not (any(e.fields.get("path") == str(mark) for e in self.snapshot())
                   and self.source.idle()):
            if time.monotonic() > deadline:
                pytest.fail(f"the FIM source did not report {mark.name} within 10 s")
            time.sleep(0.02)

    def alerts(self) -> list[Any]:
        out = [a for ev in self.snapshot() for a in self.engine.process(ev)]
        return out + self.engine.advance(time.time() + 86400)
