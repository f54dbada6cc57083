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


def test_redirects_name_the_new_first_hop_and_the_destination_moved(tmp_path: Path) -> None:
    """ICMPv6's redirect in net.ndp, IPv4's (type 5) in net.icmp: both say which
    destination goes where; a redirect cut short is counted, not half-read."""
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.inet6 import ICMPv6ND_Redirect

    from sentinel.metrics import Metrics as M

    v6 = (IPv6(src="fe80::1", dst="2001:db8::10") / ICMPv6ND_Redirect(
        tgt="fe80::66", dst="2001:db8:99::50") / ICMPv6NDOptDstLLAddr(lladdr=EVIL))
    v4 = (IP(src="10.20.0.1", dst="10.20.0.10") / ICMP(type=5, code=1, gw="10.20.0.66")
          / IP(src="10.20.0.10", dst="203.0.113.50") / TCP(sport=50000, dport=443))
    echo = IP(src="10.20.0.1", dst="10.20.0.10") / ICMP(type=8)
    short = bytes(Ether(src=EVIL, dst="02:00:00:00:00:10") / IPv6(src="fe80::1", dst="2001:db8::10")
                  / ICMPv6ND_Redirect(tgt="fe80::66", dst="2001:db8:99::50"))[:-8]
    L2 = Ether(src=EVIL, dst="02:00:00:00:00:10")
    frames = [(T0, bytes(L2 / v6)), (T0 + 1, bytes(L2 / v4)),
              (T0 + 2, bytes(L2 / echo)), (T0 + 3, short)]
    pcap = write_pcap(tmp_path / "r.pcap", 1, frames)
    metrics = M()
    got = [e.to_dict() for e in iter_pcap_events([pcap], site_config(tmp_path), metrics)]
    ndps = [e for e in got if e["kind"] == "net.ndp"]
    assert [(e["op"], e["target_ip"], e["redirected_ip"], e["mac"]) for e in ndps] == [
        ("redirect", "fe80::66", "2001:db8:99::50", EVIL)]
    icmps = [(e["src_ip"], e["type"], e["target_ip"], e["redirected_ip"])
             for e in got if e["kind"] == "net.icmp" and not e["src_ip"].startswith("fe80")]
    assert icmps == [("10.20.0.1", 5, "10.20.0.66", "203.0.113.50"),
                     ("10.20.0.1", 8, None, None)]
    assert metrics.decode_errors._value.get() == 1
