"""Each network detection of the election rule pack fires on a capture of its attack
on the reference site, replayed by `sentinel replay -c config.example.yaml`.

Every capture also carries some of the site's ordinary traffic, and each scenario
names the exact set of rules its capture may raise, so a scenario fails both when
its detection stays silent and when anything else in the pack fires on it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import TCP
from scenariokit import (
    ADMIN,
    APP_SERVER,
    CENTRAL,
    GATEWAY,
    GATEWAY_MAC,
    T0,
    TALLY,
    TALLY_MAC,
    Capture,
    replay,
)

ATTACKER = "10.20.0.66"          # a machine on the counting network gone bad
ATTACKER_MAC = "02:00:00:00:06:66"
OUTSIDER = "198.51.100.23"       # somewhere on the internet


def background(c: Capture, t: float = T0) -> None:
    """A slice of the normal day: a counting station, the app server, an admin, an upload."""
    c.tcp_session(t, "10.20.0.21", 50001, TALLY, 443)
    c.tcp_session(t + 0.5, APP_SERVER, 50002, TALLY, 5432)
    c.tcp_session(t + 1.0, ADMIN, 50003, TALLY, 22)
    c.dns(t + 1.5, TALLY, "pemilu.kpu.go.id")
    c.tcp_session(t + 1.6, TALLY, 50004, CENTRAL, 443, up=20000)


@dataclass
class Scenario:
    build: Callable[[Capture], None]
    rule: str
    severity: str
    fields: dict[str, Any]           # fields the alert's event must carry
    allowed: frozenset[str]          # every rule this capture may raise (rule included)
    count: int | None = None         # the alert's count, when it is a threshold's
    times: int = 1                   # how many alerts of ``rule``


def db_attack(c: Capture) -> None:
    background(c)
    c.tcp_session(T0 + 3, ATTACKER, 41000, TALLY, 5432)
    c.tcp_session(T0 + 4, ATTACKER, 41001, TALLY, 5432)   # folded into the first alert


def ssh_brute_force(c: Capture) -> None:
    background(c)
    for i in range(6):
        c.tcp_session(T0 + 3 + i, OUTSIDER, 42000 + i, TALLY, 22)


def reverse_shell(c: Capture) -> None:
    background(c)
    c.tcp_session(T0 + 3, TALLY, 43000, "198.51.100.66", 4444, up=300, down=3000)


def lateral_move(c: Capture) -> None:
    background(c)
    c.refused(T0 + 3, TALLY, 43001, "10.20.0.40", 445)


def dns_outside(c: Capture) -> None:
    background(c)
    c.dns(T0 + 3, TALLY, "pastebin.com", sport=44000)
    c.dns(T0 + 4, TALLY, "www.pastebin.com", sport=44001)  # same domain: folded


LONG = "6b7a1f0e9c3d2b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a"


def dns_long_label(c: Capture) -> None:
    background(c)
    c.dns(T0 + 3, TALLY, f"{LONG}.t.exfil-example.net", sport=44002, answer=None)


def dns_many_names(c: Capture) -> None:
    background(c)
    for i in range(25):
        c.dns(T0 + 3 + i, TALLY, f"x{i:03d}.t.exfil-example.net", sport=44100 + i)


def dns_txt_flood(c: Capture) -> None:
    background(c)
    for i in range(22):
        c.dns(T0 + 3 + i, TALLY, "cmd.t.exfil-example.net", qtype="TXT", sport=44200 + i)


def port_scan(c: Capture) -> None:
    background(c)
    offered = {22, 443, 5432}
    for i, port in enumerate([21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993,
                              3306, 3389, 5432, 5900, 8080, 8443, 9000]):
        t = T0 + 3 + i * 0.2
        if port in offered:
            c.tcp_session(t, ATTACKER, 45000 + i, TALLY, port)
        else:
            c.refused(t, ATTACKER, 45000 + i, TALLY, port)


def host_sweep(c: Capture) -> None:
    background(c)
    for i in range(30):
        c.ping(T0 + 3 + i * 0.5, TALLY, f"10.20.0.{100 + i}", reply=i % 3 == 0)


def arp_sweep(c: Capture) -> None:
    background(c)
    for i in range(40):
        c.arp_request(T0 + 3 + i * 0.1, ATTACKER_MAC, ATTACKER, f"10.20.0.{100 + i}")


def gateway_spoof(c: Capture) -> None:
    background(c)
    c.arp_request(T0 + 2, TALLY_MAC, TALLY, GATEWAY)
    c.arp_reply(T0 + 2.001, GATEWAY_MAC, GATEWAY, TALLY_MAC, TALLY)
    for i in range(10):  # a spoofer repeats its lie every couple of seconds
        c.arp_reply(T0 + 3 + 2 * i, ATTACKER_MAC, GATEWAY, TALLY_MAC, TALLY)


def tally_spoof(c: Capture) -> None:
    background(c)
    c.arp_request(T0 + 2, "02:00:00:00:01:15", "10.20.0.21", TALLY)
    c.arp_reply(T0 + 2.001, TALLY_MAC, TALLY, "02:00:00:00:01:15", "10.20.0.21")
    for i in range(5):
        c.arp_reply(T0 + 3 + 2 * i, ATTACKER_MAC, TALLY, "02:00:00:00:01:15", "10.20.0.21")


def mac_change(c: Capture) -> None:
    background(c)
    c.arp_request(T0 + 2, "02:00:00:00:01:15", "10.20.0.21", TALLY)
    c.arp_request(T0 + 9, "02:00:00:00:07:77", "10.20.0.21", TALLY)


def telnet(c: Capture) -> None:
    background(c)
    c.refused(T0 + 3, ADMIN, 46000, TALLY, 23)


def large_upload(c: Capture) -> None:
    background(c)
    end = c.bulk(T0 + 3, TALLY, 47000, "198.51.100.7", 443, total=56_000_000, seconds=120)
    c.ip(end + 0.01, TALLY, "198.51.100.7", _fin(47000, 443))


def large_upload_long(c: Capture) -> None:
    background(c)
    # 60 MB in four and a half minutes on a connection that stays open: the flow's
    # interval report (every 5 minutes) shows the total while it is still going
    end = c.bulk(T0 + 3, TALLY, 47001, "198.51.100.8", 443, total=60_000_000, seconds=270)
    for i in range(1, 5):
        c.ip(end + 15 * i, TALLY, "198.51.100.8", _ack(47001, 443))


def large_download(c: Capture) -> None:
    background(c)
    # a compromised counting station pulls the results store through the web app
    end = c.bulk(T0 + 3, TALLY, 443, ATTACKER, 47100, total=54_000_000, seconds=90,
                 opened_by_dst=True)
    c.ip(end + 0.01, ATTACKER, TALLY, _fin(47100, 443))


def large_download_long(c: Capture) -> None:
    background(c)
    # an SSH session that copies 70 MB off and stays open
    end = c.bulk(T0 + 3, TALLY, 22, ADMIN, 47101, total=70_000_000, seconds=200,
                 opened_by_dst=True)
    for i in range(1, 8):
        c.ip(end + 20 * i, ADMIN, TALLY, _ack(47101, 22))


def _fin(sport: int, dport: int) -> TCP:
    return TCP(sport=sport, dport=dport, flags="FA", seq=9, ack=9)


def _ack(sport: int, dport: int) -> TCP:
    return TCP(sport=sport, dport=dport, flags="A", seq=9, ack=9)


def backdoor_port(c: Capture) -> None:
    background(c)
    c.tcp_session(T0 + 3, "10.20.0.21", 48000, TALLY, 31337)


def web_from_outside(c: Capture) -> None:
    background(c)
    c.tcp_session(T0 + 3, OUTSIDER, 49000, TALLY, 443)


NET = "network"
SCENARIOS: dict[str, Scenario] = {
    "d01-db-from-counting-station": Scenario(
        db_attack, "tally-db-unauthorized-access", "critical",
        {"src_ip": ATTACKER, "dst_ip": TALLY, "dst_port": 5432, "proto": "tcp"},
        frozenset({"tally-db-unauthorized-access"})),
    "d02-ssh-from-internet": Scenario(
        ssh_brute_force, "ssh-from-outside-admin-net", "high",
        {"src_ip": OUTSIDER, "dst_port": 22, "direction": "inbound"},
        frozenset({"ssh-from-outside-admin-net"})),
    "d03-outbound-to-internet": Scenario(
        reverse_shell, "tally-outbound-unexpected-destination", "high",
        {"src_ip": TALLY, "dst_ip": "198.51.100.66", "dst_port": 4444},
        frozenset({"tally-outbound-unexpected-destination"})),
    "d03-outbound-to-internal-host": Scenario(
        lateral_move, "tally-outbound-unexpected-internal", "medium",
        {"src_ip": TALLY, "dst_ip": "10.20.0.40", "dst_port": 445, "dst_internal": True},
        frozenset({"tally-outbound-unexpected-internal"})),
    "d04-dns-outside-allowed": Scenario(
        dns_outside, "dns-query-outside-allowed-domains", "medium",
        {"qname": "pastebin.com", "src_ip": TALLY, "is_response": False},
        frozenset({"dns-query-outside-allowed-domains"})),
    "d04-dns-long-label": Scenario(
        dns_long_label, "dns-tunnel-long-label", "high",
        {"qname": f"{LONG}.t.exfil-example.net", "src_ip": TALLY},
        frozenset({"dns-tunnel-long-label", "dns-query-outside-allowed-domains"})),
    "d04-dns-many-subdomains": Scenario(
        dns_many_names, "dns-tunnel-many-subdomains", "high",
        {"src_ip": TALLY, "is_response": False},
        frozenset({"dns-tunnel-many-subdomains", "dns-query-outside-allowed-domains"}),
        count=20),
    "d04-dns-txt-flood": Scenario(
        dns_txt_flood, "dns-tunnel-txt-flood", "high",
        {"src_ip": TALLY, "qtype": "TXT"},
        frozenset({"dns-tunnel-txt-flood", "dns-query-outside-allowed-domains"}), count=20),
    "d05-port-scan": Scenario(
        port_scan, "port-scan-of-tally-server", "high", {"src_ip": ATTACKER, "dst_ip": TALLY},
        # the scan also knocks on the database and SSH, which have rules of their own
        frozenset({"port-scan-of-tally-server", "tally-db-unauthorized-access",
                   "ssh-from-outside-admin-net", "cleartext-admin-protocol"}), count=15),
    "d05-host-sweep": Scenario(
        host_sweep, "host-sweep", "high", {"src_ip": TALLY, "kind": "net.icmp", "type": 8},
        frozenset({"host-sweep"}), count=25),
    "d05-arp-sweep": Scenario(
        arp_sweep, "arp-sweep", "high",
        {"sender_ip": ATTACKER, "sender_mac": ATTACKER_MAC, "op": "request"},
        frozenset({"arp-sweep"}), count=25),
    "d06-gateway-spoofed": Scenario(
        gateway_spoof, "arp-gateway-spoofed", "critical",
        {"sender_ip": GATEWAY, "sender_mac": ATTACKER_MAC, "op": "reply"},
        frozenset({"arp-gateway-spoofed"})),
    "d06-tally-server-spoofed": Scenario(
        tally_spoof, "arp-tally-server-spoofed", "critical",
        {"sender_ip": TALLY, "sender_mac": ATTACKER_MAC},
        frozenset({"arp-tally-server-spoofed"})),
    "d06-address-changed-mac": Scenario(
        mac_change, "arp-address-changed-mac", "medium",
        {"sender_ip": "10.20.0.21", "sender_mac": "02:00:00:00:07:77"},
        frozenset({"arp-address-changed-mac"})),
    "d07-telnet": Scenario(
        telnet, "cleartext-admin-protocol", "high",
        {"src_ip": ADMIN, "dst_ip": TALLY, "dst_port": 23, "proto": "tcp"},
        frozenset({"cleartext-admin-protocol"})),
    "d08-large-upload": Scenario(
        large_upload, "tally-large-upload", "high",
        {"src_ip": TALLY, "dst_ip": "198.51.100.7", "final": True},
        frozenset({"tally-large-upload", "tally-outbound-unexpected-destination"})),
    "d08-large-upload-long-connection": Scenario(
        large_upload_long, "tally-large-upload-long-connection", "high",
        {"src_ip": TALLY, "dst_ip": "198.51.100.8", "final": False},
        # 60 MB within 5 minutes: the exact sum over flow reports sees it too
        frozenset({"tally-large-upload-long-connection", "tally-large-upload",
                   "tally-outbound-unexpected-destination"})),
    "d08-large-download": Scenario(
        large_download, "tally-large-download", "high",
        {"src_ip": ATTACKER, "dst_ip": TALLY, "dst_port": 443, "final": True},
        frozenset({"tally-large-download"})),
    "d08-large-download-long-connection": Scenario(
        large_download_long, "tally-large-download-long-connection", "high",
        {"src_ip": ADMIN, "dst_ip": TALLY, "dst_port": 22, "final": False},
        frozenset({"tally-large-download-long-connection", "tally-large-download"})),
    "d09-backdoor-listening": Scenario(
        backdoor_port, "tally-unexpected-listening-port", "high",
        {"kind": "net.tcp_synack", "src_ip": TALLY, "src_port": 31337, "tcp_flags": "SA"},
        frozenset({"tally-unexpected-listening-port"})),
    "d10-web-from-internet": Scenario(
        web_from_outside, "tally-web-from-outside-counting-net", "medium",
        {"src_ip": OUTSIDER, "dst_port": 443},
        frozenset({"tally-web-from-outside-counting-net"})),
}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every scenario's capture written and replayed (replays run side by side)."""
    folder = tmp_path_factory.mktemp("captures")
    pcaps: dict[str, Path] = {}
    for name, sc in SCENARIOS.items():
        c = Capture()
        sc.build(c)
        pcaps[name] = c.write(folder / f"{name}.pcap")
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(pcaps, pool.map(replay, pcaps.values()), strict=True))
    return done


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_attack_raises_its_alert(name: str, replayed: dict[str, list[dict[str, Any]]]) -> None:
    sc = SCENARIOS[name]
    alerts = replayed[name]
    fired = {a["rule"] for a in alerts}
    assert sc.rule in fired, f"{sc.rule} did not fire; fired: {sorted(fired)}"
    assert fired <= sc.allowed, f"unexpected rules: {sorted(fired - sc.allowed)}"
    # a replay ends like the daemon stops: open suppression periods close with a summary
    # (issue #14.7); ``times`` counts the detections, not their summaries
    mine = [a for a in alerts if a["rule"] == sc.rule and not a.get("summary")]
    assert len(mine) == sc.times, [a["title"] for a in mine]
    alert = mine[0]
    assert alert["severity"] == sc.severity
    assert alert["host"] == "tally-01" and alert["source"] == NET
    assert "network" in alert["tags"]
    assert {k: alert["event"].get(k) for k in sc.fields} == sc.fields
    if sc.count is not None:
        assert alert["count"] == sc.count
    assert alert["title"] and "{" not in alert["title"] and " - " not in alert["title"]
    assert alert["description"] and "{" not in alert["description"]


def test_large_upload_measures_the_bytes_sent(replayed: dict[str, list[dict[str, Any]]]) -> None:
    """The threshold alert carries the total (frame lengths on the wire), over 50 MB."""
    (alert,) = [a for a in replayed["d08-large-upload"] if a["rule"] == "tally-large-upload"]
    assert alert["threshold"]["measure"] == "sum"
    assert 55_000_000 <= alert["threshold"]["value"] <= 57_000_000
    assert alert["group"] == {"dst_ip": "198.51.100.7"}
