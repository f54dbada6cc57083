"""IPv6 neighbour discovery decoded into net.ndp: router and neighbour claims (#17.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from netkit import site_config, write_pcap
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from sentinel.config_reader import load_config
from sentinel.engine import Engine, load_rules
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net import iter_pcap_events
from tests.conftest import EXAMPLE_SECRETS, REPO

T0 = 1_707_890_400.0
EVIL = "02:00:00:00:06:66"


def ndp(tmp: Path, *pkts: Any) -> list[dict[str, Any]]:
    pcap = write_pcap(tmp / "n.pcap", 1, [(T0 + i, bytes(Ether() / p)) for i, p in
                                          enumerate(pkts)])
    events = iter_pcap_events([pcap], site_config(tmp), Metrics())
    return [e.to_dict() for e in events if e.kind == "net.ndp"]


def test_router_advert_and_neighbor_advert_carry_the_claimed_mac(tmp_path: Path) -> None:
    got = ndp(tmp_path,
              IPv6(src="fe80::66", dst="ff02::1") / ICMPv6ND_RA() / ICMPv6NDOptMTU()
              / ICMPv6NDOptSrcLLAddr(lladdr=EVIL),
              IPv6(src="fe80::66", dst="ff02::1") / ICMPv6ND_NA(tgt="2001:db8::1", O=1)
              / ICMPv6NDOptDstLLAddr(lladdr=EVIL),
              IPv6(src="fe80::1", dst="2001:db8::10") / ICMPv6ND_NA(tgt="2001:db8::1"))
    assert [(e["op"], e["target_ip"], e["mac"]) for e in got] == [
        ("router_advert", None, EVIL), ("neighbor_advert", "2001:db8::1", EVIL),
        ("neighbor_advert", "2001:db8::1", "")]


def test_neighbor_advert_for_the_ipv6_gateway_from_another_mac_alerts(tmp_path: Path,
                                                                        monkeypatch: Any) -> None:
    """At a dual-stack site (its IPv6 gateway listed), a spoofed NA raises the rule."""
    cfg = yaml.safe_load((REPO / "config.example.yaml").read_text())
    cfg["rules"]["paths"] = [str(REPO / "rules")]
    cfg["outputs"] = {"metrics": {"enabled": False}}
    cfg["state_dir"] = str(tmp_path)
    cfg["lists"]["gateway_ip"] = ["10.20.0.1", "2001:db8::1"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for k, v in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(k, v)
    engine = Engine(load_rules(load_config(path)), host="tally-01")
    (na,) = ndp(tmp_path, IPv6(src="fe80::66", dst="ff02::1")
                / ICMPv6ND_NA(tgt="2001:db8::1", O=1) / ICMPv6NDOptDstLLAddr(lladdr=EVIL))
    fields = {k: v for k, v in na.items() if k not in ("kind", "time", "host", "source")}
    alerts = engine.process(Event("net.ndp", T0, "tally-01", "network", fields))
    assert [a.rule for a in alerts] == ["ndp-gateway-spoofed"]
    assert alerts[0].severity == "critical"
