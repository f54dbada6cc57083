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
import yaml
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.ntp import NTP
from scenariokit import (
    ADMIN,
    APP_SERVER,
    BROADCAST,
    CENTRAL,
    EXAMPLE_CONFIG,
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
    # lists changed from the reference site's (the site stays the same otherwise): for
    # detections that need a fact the reference site lacks, such as IPv6 addresses
    lists: dict[str, list[Any]] | None = None


#: The reference site as a dual-stack site: IPv6 addresses of the gateway and tally server.
DUAL_STACK: dict[str, list[Any]] = {"gateway_ip": [GATEWAY, "2001:db8:20::1"],
                                    "tally_server": [TALLY, "2001:db8:20::10"]}


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


def timestamp_sweep(c: Capture) -> None:
    """A sweep by ICMP timestamp requests (the ping that passes filters dropping echo)."""
    background(c)
    for i in range(30):
        c.ip(T0 + 3 + i * 0.5, TALLY, f"10.20.0.{100 + i}", ICMP(type=13))


def arp_sweep(c: Capture, hosts: int = 40, every: float = 0.1) -> None:
    background(c)
    for i in range(hosts):
        c.arp_request(T0 + 3 + i * every, ATTACKER_MAC, ATTACKER, f"10.20.0.{100 + i}")


def arp_slow_sweep(c: Capture) -> None:
    """An ARP sweep paced at one request every 15 s, under the one-minute rule's 25."""
    arp_sweep(c, hosts=60, every=15)


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
    c.refused(T0 + 2, ADMIN, 45999, TALLY, 23)  # a knock answered by a reset: no session
    c.tcp_session(T0 + 3, ADMIN, 46000, TALLY, 23)


def stealth_scan(flags: str) -> Callable[[Capture], None]:
    """A scanner's FIN / NULL / Xmas / ACK / Maimon scans: 100 ports, no SYN at all."""
    def build(c: Capture) -> None:
        background(c)
        for i in range(100):
            port = 1 + i * 7
            c.ip(T0 + 3 + i * 0.001, ATTACKER, TALLY, TCP(sport=61000, dport=port, flags=flags))
            if port % 2:  # closed ports (or every port, for ACK) answer with a reset
                c.ip(T0 + 3 + i * 0.001 + 0.0005, TALLY, ATTACKER,
                     TCP(sport=port, dport=61000, flags="R"))
    return build


def stealth_probe_of_few_ports(flags: str) -> Callable[[Capture], None]:
    """A stealth probe of the three ports that matter, from an admin PC: 22, 443, 5432."""
    def build(c: Capture) -> None:
        background(c)
        for i, port in enumerate((22, 443, 5432)):
            c.ip(T0 + 3 + i * 0.01, "10.20.1.7", TALLY, TCP(sport=61500, dport=port,
                                                            flags=flags))
    return build


def syn_scan_with_retries(c: Capture) -> None:
    """A SYN scan of 200 ports (1-199 and 5432), each SYN re-sent after its answer;
    22 is open."""
    background(c)
    for i, port in enumerate([*range(1, 200), 5432]):
        t = T0 + 3 + i * 0.002
        for k in range(2):
            c.ip(t + k * 0.5, ATTACKER, TALLY, TCP(sport=62000, dport=port, flags="S", seq=4242))
            if port in (22, 443):
                c.ip(t + k * 0.5 + 0.0001, TALLY, ATTACKER,
                     TCP(sport=port, dport=62000, flags="SA", seq=1, ack=4243))
            else:
                c.ip(t + k * 0.5 + 0.0001, TALLY, ATTACKER,
                     TCP(sport=port, dport=62000, flags="RA", ack=4243))


def ssh_guessing_from_admin_net(c: Capture) -> None:
    background(c)
    for i in range(40):  # password guessing: a session every few seconds, from an admin PC
        # a client's banner, key exchange and a few tries; the server's host key and refusals
        c.tcp_session(T0 + 3 + i * 3, "10.20.1.7", 42100 + i, TALLY, 22, up=1700, down=2300)


def os_fingerprint_of_ssh(c: Capture) -> None:
    """A scan with OS and version detection, SSH being the open port it fingerprints: 20
    connections to 22, none a login. The prober's SYNs to 22 are each answered and then
    reset by its kernel; three probes carry no SYN; a version probe reads the banner; three
    script sessions run a key exchange to list the host keys and algorithms."""
    background(c)
    t = T0 + 3
    for i, port in enumerate([*range(1, 100), 5432]):  # the port scan that finds 22 open
        c.ip(t + i * 0.002, ATTACKER, TALLY, TCP(sport=61000, dport=port, flags="S"))
        if port == 22:
            c.ip(t + i * 0.002 + 0.0001, TALLY, ATTACKER,
                 TCP(sport=22, dport=61000, flags="SA", seq=1, ack=1))
            c.ip(t + i * 0.002 + 0.0002, ATTACKER, TALLY,
                 TCP(sport=61000, dport=22, flags="R", seq=1))
        else:
            c.ip(t + i * 0.002 + 0.0001, TALLY, ATTACKER,
                 TCP(sport=port, dport=61000, flags="RA", ack=1))
    t += 1
    probes = [("S", 61101 + k) for k in range(6)] + [("SEC", 61107), ("", 61108),
                                                        ("SFPU", 61109), ("A", 61110)]
    for k, (flags, first_port) in enumerate(probes * 2):  # each sent twice: it re-tries
        sport = first_port + 20 * (k // len(probes))
        at = t + k * 0.1
        c.ip(at, ATTACKER, TALLY, TCP(sport=sport, dport=22, flags=flags, seq=7000))
        if "S" in flags:
            c.ip(at + 0.0001, TALLY, ATTACKER,
                 TCP(sport=22, dport=sport, flags="SA", seq=1, ack=7001))
            c.ip(at + 0.0002, ATTACKER, TALLY, TCP(sport=sport, dport=22, flags="R", seq=7001))
        else:
            c.ip(at + 0.0001, TALLY, ATTACKER, TCP(sport=22, dport=sport, flags="R", seq=0))
    t += 3
    for k in range(2):  # version detection: connect, read the greeting, close
        c.tcp_session(t + k, ATTACKER, 61200 + k, TALLY, 22, up=0, down=41)
    for k in range(3):  # scripts: a key exchange each, no login
        c.tcp_session(t + 3 + k, ATTACKER, 61300 + k, TALLY, 22, up=1500, down=1900)


def slow_tunnel(c: Capture) -> None:
    """A slow DNS tunnel: 12 lookups of 34-character hexadecimal labels over 20 minutes."""
    background(c)
    for i in range(12):
        label = f"{i:02x}6b7a1f0e9c3d2b4a5f6e7d8c9b0a1f2e"
        c.dns(T0 + 3 + i * 100, TALLY, f"{label}.tun.exfil-example.net",
              qtype=("TXT", "CNAME", "MX")[i % 3], sport=44300 + i, answer=None)


def dns_mx_rotation(c: Capture) -> None:
    """A tunnel asking one domain for MX and CNAME records, slowly, with short names."""
    background(c)
    for i in range(6):
        c.dns(T0 + 3 + i * 120, TALLY, f"s{i}.mx-example.net", qtype=("MX", "CNAME")[i % 2],
              sport=44400 + i, answer=None)


def web_credential_stuffing(c: Capture) -> None:
    background(c)
    for i in range(70):  # one connection per login try, from a counting station gone bad
        c.tcp_session(T0 + 3 + i * 0.5, "10.20.0.33", 52000 + i, TALLY, 443)


def db_probe_refused(c: Capture) -> None:
    background(c)
    c.refused(T0 + 3, ATTACKER, 41500, TALLY, 5432)


def fragmented_db_syn(c: Capture) -> None:
    """A SYN to the database in 8-byte fragments, accepted by the tally server."""
    from scapy.layers.inet import fragment
    background(c)
    syn = IP(src=ATTACKER, dst=TALLY, id=999) / TCP(sport=41700, dport=5432, flags="S",
                                                  seq=1000)
    for i, f in enumerate(fragment(syn, fragsize=8)):
        c.add(T0 + 3 + i * 0.001, _eth(mac_of_attacker(), TALLY_MAC) / f)
    c.ip(T0 + 3.01, TALLY, ATTACKER, TCP(sport=5432, dport=41700, flags="SA", seq=5, ack=1001))


def overlapping_fragments(c: Capture) -> None:
    from scapy.layers.inet import fragment
    from scapy.packet import Raw
    background(c)
    syn = IP(src=ATTACKER, dst=TALLY, id=1001) / TCP(sport=41701, dport=22, flags="S")
    first, second, third = fragment(syn, fragsize=8)
    rogue = IP(src=ATTACKER, dst=TALLY, id=1001, proto=6, frag=1, flags="MF") / Raw(b"\0" * 16)
    for i, f in enumerate((first, second, rogue, third)):
        c.add(T0 + 3 + i * 0.001, _eth(mac_of_attacker(), TALLY_MAC) / f)


def new_station(c: Capture) -> None:
    """Ten minutes in (past the learning), a laptop is plugged into the segment."""
    background(c)
    c.arp_request(T0 + 2, "02:00:00:00:01:15", "10.20.0.21", TALLY)
    c.arp_request(T0 + 600, "02:00:00:00:09:99", "10.20.0.199", TALLY)


def flip_flop(c: Capture, start: float = T0 + 400) -> None:
    """A poisoner and the real owner keep claiming 10.20.0.21 in turn."""
    background(c)
    owner, poisoner = "02:00:00:00:01:15", ATTACKER_MAC
    c.arp_request(T0 + 2, owner, "10.20.0.21", TALLY)
    c.arp_request(T0 + 3, poisoner, ATTACKER, TALLY)
    for k in range(3):
        t = start + k * 10
        c.arp_reply(t, poisoner, "10.20.0.21", TALLY_MAC, TALLY)
        c.arp_reply(t + 5, owner, "10.20.0.21", TALLY_MAC, TALLY)


def flip_flop_at_once(c: Capture) -> None:
    """The same, within the capture's first minute (a short capture of a poisoning)."""
    flip_flop(c, start=T0 + 5)


def rogue_router_advert(c: Capture) -> None:
    from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr, IPv6
    background(c)
    c.add(T0 + 3, _eth(ATTACKER_MAC, "33:33:00:00:00:01") / IPv6(src="fe80::66", dst="ff02::1")
          / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=ATTACKER_MAC))


def ndp_spoof(target: str) -> Callable[[Capture], None]:
    def build(c: Capture) -> None:
        from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
        background(c)
        for i in range(3):
            c.add(T0 + 3 + i, _eth(ATTACKER_MAC, "33:33:00:00:00:01")
                  / IPv6(src="fe80::66", dst="ff02::1") / ICMPv6ND_NA(tgt=target, O=1)
                  / ICMPv6NDOptDstLLAddr(lladdr=ATTACKER_MAC))
    return build


TALLY6, ATTACKER6 = "2001:db8:20::10", "2001:db8:20::66"


def ipv6_chain_db_syn(c: Capture) -> None:
    """A SYN to the database behind 13 destination-options headers, accepted."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
    background(c)
    pkt: Any = IPv6(src=ATTACKER6, dst=TALLY6)
    for _ in range(13):
        pkt = pkt / IPv6ExtHdrDestOpt()
    c.add(T0 + 3, _eth(ATTACKER_MAC, TALLY_MAC) / pkt / TCP(sport=41800, dport=5432,
                                                            flags="S", seq=1000))
    c.add(T0 + 3.001, _eth(TALLY_MAC, ATTACKER_MAC) / IPv6(src=TALLY6, dst=ATTACKER6)
          / TCP(sport=5432, dport=41800, flags="SA", seq=7, ack=1001))


def fragmented_dns(c: Capture) -> None:
    """The tally server asks an outside name in a query split into two IP fragments."""
    from scapy.layers.inet import fragment
    background(c)
    q = IP(src=TALLY, dst="10.20.0.2", id=4000) / UDP(sport=44500, dport=53) / DNS(
        id=5, rd=1, qd=DNSQR(qname="hidden.exfil-example.net", qtype="A"))
    for i, f in enumerate(fragment(IP(bytes(q)), fragsize=24)):
        c.add(T0 + 3 + i * 0.001, _eth(TALLY_MAC, "02:00:00:00:01:02") / f)


def split_tcp_dns(c: Capture) -> None:
    """The same over TCP, one byte of the length in the first segment, out of order."""
    from scapy.packet import Raw
    background(c)
    msg = bytes(DNS(id=6, rd=1, qd=DNSQR(qname="tcp-hidden.exfil-example.net", qtype="TXT")))
    stream = len(msg).to_bytes(2, "big") + msg
    c.ip(T0 + 3, TALLY, "10.20.0.2", TCP(sport=44600, dport=53, flags="S", seq=100))
    c.ip(T0 + 3.001, "10.20.0.2", TALLY, TCP(sport=53, dport=44600, flags="SA", seq=9, ack=101))
    c.ip(T0 + 3.002, TALLY, "10.20.0.2", TCP(sport=44600, dport=53, flags="PA", seq=102,
                                             ack=10) / Raw(stream[1:]))
    c.ip(T0 + 3.003, TALLY, "10.20.0.2", TCP(sport=44600, dport=53, flags="PA", seq=101,
                                             ack=10) / Raw(stream[:1]))


def mac_of_attacker() -> str:
    return ATTACKER_MAC


def rogue_dhcp(c: Capture) -> None:
    background(c)
    c.add(T0 + 3, _eth(ATTACKER_MAC, BROADCAST) / _ip(ATTACKER, "255.255.255.255")
          / UDP(sport=67, dport=68) / BOOTP(op=2, yiaddr="10.20.0.77")
          / DHCP(options=[("message-type", "offer"), ("router", ATTACKER), "end"]))


def dns_spoof(c: Capture) -> None:
    background(c)
    c.ip(T0 + 3, ATTACKER, TALLY, UDP(sport=53, dport=40000) / DNS(
        id=7, qr=1, qd=DNSQR(qname="sirekap.kpu.go.id"),
        an=DNSRR(rrname="sirekap.kpu.go.id", rdata=ATTACKER)))


def rogue_dhcp6(sport: int) -> Callable[[Capture], None]:
    """The tally server's own DHCPv6 solicit (no alert), answered by a rogue server from
    the server port, or from a port of its own (a client takes either)."""
    def build(c: Capture) -> None:
        from scapy.layers.dhcp6 import DHCP6_Advertise, DHCP6_Solicit
        from scapy.layers.inet6 import IPv6
        background(c)
        c.add(T0 + 3, _eth(TALLY_MAC, "33:33:00:01:00:02")
              / IPv6(src="fe80::10", dst="ff02::1:2") / UDP(sport=546, dport=547)
              / DHCP6_Solicit(trid=7))
        c.add(T0 + 3.01, _eth(ATTACKER_MAC, TALLY_MAC) / IPv6(src="fe80::66", dst="fe80::10")
              / UDP(sport=sport, dport=546) / DHCP6_Advertise(trid=7))
    return build


def ndp_takeover(c: Capture) -> None:
    """A station's link-local address answered for by its owner, then by the attacker."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    background(c)
    for i, mac in enumerate(("02:00:00:00:01:15", ATTACKER_MAC)):
        c.add(T0 + 3 + i, _eth(mac, TALLY_MAC) / IPv6(src="fe80::21", dst="fe80::10")
              / ICMPv6ND_NA(tgt="fe80::21", S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))


def mac_flood(c: Capture, start: float = T0 + 400, frames: int = 120) -> None:
    """A flooding tool's frames from made-up MACs and addresses, after the first five
    minutes that learn the segment: TCP to made-up hosts, flooded to every port."""
    import random
    rng = random.Random(7)
    background(c)
    for i in range(frames):
        mac = "06:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))
        src = f"10.{rng.randrange(30, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        dst = f"10.{rng.randrange(30, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        c.add(start + i * 0.01, _eth(mac, "0a:" + mac[3:]) / _ip(src, dst)
              / TCP(sport=rng.randrange(1024, 65535), dport=rng.randrange(1, 65535),
                    flags="S"))


def mac_flood_from_the_start(c: Capture) -> None:
    """The flood from the capture's first seconds, in the time that learns the segment
    (a daemon started during a flood, or a capture of one): 400 made-up MACs in 4 s."""
    mac_flood(c, start=T0 + 2, frames=400)


def icmp_redirect(c: Capture) -> None:
    """A redirect forged with the gateway's address: traffic for central via the attacker."""
    background(c)
    c.add(T0 + 3, _eth(ATTACKER_MAC, TALLY_MAC) / _ip(GATEWAY, TALLY)
          / ICMP(type=5, code=1, gw=ATTACKER) / IP(src=TALLY, dst=CENTRAL)
          / TCP(sport=50004, dport=443))


def icmp6_redirect(c: Capture) -> None:
    from scapy.layers.inet6 import ICMPv6ND_Redirect, ICMPv6NDOptDstLLAddr, IPv6
    background(c)
    c.add(T0 + 3, _eth(ATTACKER_MAC, TALLY_MAC) / IPv6(src="fe80::1", dst=TALLY6)
          / ICMPv6ND_Redirect(tgt="fe80::66", dst="2001:db8:99::50")
          / ICMPv6NDOptDstLLAddr(lladdr=ATTACKER_MAC))


def ntp_spoof(c: Capture) -> None:
    background(c)
    c.ip(T0 + 3, ATTACKER, TALLY, UDP(sport=123, dport=123) / NTP(mode=4))


def udp_probe(c: Capture) -> None:
    background(c)
    c.ip(T0 + 3, ATTACKER, TALLY, UDP(sport=40001, dport=161) / b"\x30\x26")


def udp_probe_tftp(c: Capture) -> None:
    """A UDP scan's probe of port 69, answered by port unreachable: a probe, not TFTP in use."""
    background(c)
    c.ip(T0 + 3, ATTACKER, TALLY, UDP(sport=40002, dport=69) / b"\x00\x01x\x00octet\x00")
    c.ip(T0 + 3.001, TALLY, ATTACKER, ICMP(type=3, code=3) / IP(src=ATTACKER, dst=TALLY)
         / UDP(sport=40002, dport=69))


def tftp_from_tally(c: Capture) -> None:
    """The tally server fetches a file over TFTP; the answer comes from another port, and
    the tally server acknowledges it there."""
    background(c)
    c.ip(T0 + 3, TALLY, "10.20.0.40", UDP(sport=40003, dport=69) / b"\x00\x01boot\x00octet\x00")
    for block in range(1, 4):
        t = T0 + 3 + block * 0.01
        c.ip(t, "10.20.0.40", TALLY, UDP(sport=51515, dport=40003)
             / (b"\x00\x03" + block.to_bytes(2, "big") + b"x" * 512))
        c.ip(t + 0.001, TALLY, "10.20.0.40", UDP(sport=40003, dport=51515)
             / (b"\x00\x04" + block.to_bytes(2, "big")))


def ping_tunnel(c: Capture) -> None:
    """Data leaving in echo requests to an internet host (a tunnel over ICMP)."""
    background(c)
    for i in range(20):
        c.ip(T0 + 3 + i * 0.2, TALLY, "198.51.100.66", ICMP(type=8, id=77, seq=i)
             / (b"results-chunk-%03d" % i * 40))
        c.ip(T0 + 3.05 + i * 0.2, "198.51.100.66", TALLY, ICMP(type=0, id=77, seq=i) / b"ok")


def sctp_scan(c: Capture) -> None:
    """An SCTP INIT scan of 20 ports: each answered by an ABORT, or by nothing."""
    from scapy.layers.sctp import SCTP, SCTPChunkInit

    background(c)
    for i in range(20):
        c.ip(T0 + 3 + i * 0.001, ATTACKER, TALLY, SCTP(sport=41000, dport=1000 + i)
             / SCTPChunkInit())


def gre_tunnel_out(c: Capture) -> None:
    """The tally server opens a GRE tunnel to an internet host (no port to match)."""
    from scapy.layers.l2 import GRE

    background(c)
    for i in range(5):
        c.ip(T0 + 3 + i, TALLY, "198.51.100.77", GRE() / IP(src="192.168.77.1",
             dst="192.168.77.2") / UDP(sport=5000, dport=5000) / (b"r" * 200))


def _eth(src: str, dst: str) -> Any:
    from scapy.layers.l2 import Ether
    return Ether(src=src, dst=dst)


def _ip(src: str, dst: str) -> Any:
    from scapy.layers.inet import IP
    return IP(src=src, dst=dst)


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
        frozenset({"dns-tunnel-many-subdomains", "dns-query-outside-allowed-domains",
                   "dns-tunnel-slow-subdomains"}),
        count=20),
    "d04-dns-txt-flood": Scenario(
        dns_txt_flood, "dns-tunnel-txt-flood", "high",
        {"src_ip": TALLY, "qtype": "TXT"},
        frozenset({"dns-tunnel-txt-flood", "dns-query-outside-allowed-domains",
                   "dns-tunnel-unusual-types"}), count=20),
    "d05-port-scan": Scenario(
        port_scan, "port-scan-of-tally-server", "high", {"src_ip": ATTACKER, "dst_ip": TALLY},
        # the scan also reaches the database and SSH, which have rules of their own; the
        # resets from 21 and 23 are no clear-text session
        frozenset({"port-scan-of-tally-server", "tally-db-unauthorized-access",
                   "ssh-from-outside-admin-net", "scan-ended"}), count=15),
    "d05-syn-scan-closed-database": Scenario(
        syn_scan_with_retries, "port-scan-of-tally-server", "high",
        {"src_ip": ATTACKER, "dst_ip": TALLY, "probe": False},
        # a SYN to the closed 5432 and to 23 is an attempt: medium, and no clear-text alert
        frozenset({"port-scan-of-tally-server", "ssh-from-outside-admin-net",
                   "tally-db-access-attempt", "scan-ended"}), count=15),
    # its real size once it ends: 200 ports, each counted once despite the re-sent SYNs
    # (#14.8), one of them (22) accepted
    "d05-syn-scan-size": Scenario(
        syn_scan_with_retries, "scan-ended", "high",
        {"kind": "net.scan", "src_ip": ATTACKER, "dst_ip": TALLY, "ports": 200, "hosts": 1,
         "connections": 200, "answered": 1, "probes": 0},
        frozenset({"port-scan-of-tally-server", "ssh-from-outside-admin-net",
                   "tally-db-access-attempt", "scan-ended"})),
    **{f"d11-{name}-scan": Scenario(
        stealth_scan(flags), "port-scan-of-tally-server", "high",
        {"src_ip": ATTACKER, "dst_ip": TALLY, "probe": True, "tcp_flags": flags},
        frozenset({"port-scan-of-tally-server", "tally-db-access-attempt", "scan-ended",
                   *(() if "A" in flags else ("tcp-invalid-flags-to-tally-server",))}),
        count=15)
       for name, flags in (("fin", "F"), ("null", ""), ("xmas", "FPU"), ("ack", "A"),
                           ("maimon", "FA"))},
    # a stealth probe of a few ports, below the port scan's 15: the flags alone tell
    **{f"d11-{name}-probe-of-few-ports": Scenario(
        stealth_probe_of_few_ports(flags), "tcp-invalid-flags-to-tally-server", "medium",
        {"src_ip": "10.20.1.7", "dst_ip": TALLY, "tcp_flags": flags},
        # (SYN+FIN is also a connection attempt: to the web app from outside the counting net)
        frozenset({"tcp-invalid-flags-to-tally-server", "tally-db-access-attempt",
                   *(("tally-web-from-outside-counting-net",) if "S" in flags else ())}))
       for name, flags in (("fin", "F"), ("null", ""), ("xmas", "FPU"), ("syn-fin", "FS"))},
    "d12-ssh-guessing-from-admin-net": Scenario(
        ssh_guessing_from_admin_net, "ssh-brute-force", "high",
        {"src_ip": "10.20.1.7", "dst_port": 22}, frozenset({"ssh-brute-force"}), count=10),
    # OS and version detection against SSH is a scan, not password guessing
    "d12-os-fingerprint-is-no-guessing": Scenario(
        os_fingerprint_of_ssh, "port-scan-of-tally-server", "high",
        {"src_ip": ATTACKER, "dst_ip": TALLY},
        frozenset({"port-scan-of-tally-server", "ssh-from-outside-admin-net",
                   "tally-db-access-attempt", "scan-ended",
                   "tcp-invalid-flags-to-tally-server"}), count=15),
    "d13-slow-tunnel-labels": Scenario(
        slow_tunnel, "dns-tunnel-encoded-label", "high", {"src_ip": TALLY},
        frozenset({"dns-tunnel-encoded-label", "dns-tunnel-slow-subdomains",
                   "dns-tunnel-unusual-types", "dns-query-outside-allowed-domains"}),
        times=2),  # 20 minutes: two 10-minute suppression periods (summaries not counted)
    "d13-slow-tunnel-subdomains": Scenario(
        slow_tunnel, "dns-tunnel-slow-subdomains", "high", {"src_ip": TALLY},
        frozenset({"dns-tunnel-encoded-label", "dns-tunnel-slow-subdomains",
                   "dns-tunnel-unusual-types", "dns-query-outside-allowed-domains"}),
        count=10),
    "d13-dns-unusual-types": Scenario(
        dns_mx_rotation, "dns-tunnel-unusual-types", "medium", {"src_ip": TALLY},
        frozenset({"dns-tunnel-unusual-types", "dns-query-outside-allowed-domains"}), count=5),
    "d12-web-credential-stuffing": Scenario(
        web_credential_stuffing, "tally-service-connection-flood", "high",
        {"src_ip": "10.20.0.33", "dst_port": 443}, frozenset({"tally-service-connection-flood"}),
        count=60),
    "d01-db-attempt-refused": Scenario(
        db_probe_refused, "tally-db-access-attempt", "medium",
        {"kind": "net.flow", "src_ip": ATTACKER, "dst_port": 5432, "established": False},
        frozenset({"tally-db-access-attempt"})),
    "d15-fragmented-syn-to-database": Scenario(
        fragmented_db_syn, "tally-db-unauthorized-access", "critical",
        {"src_ip": ATTACKER, "dst_port": 5432},
        frozenset({"tally-db-unauthorized-access", "ip-tiny-first-fragment"})),
    "d15-tiny-first-fragment": Scenario(
        fragmented_db_syn, "ip-tiny-first-fragment", "high",
        {"kind": "net.fragment", "src_ip": ATTACKER, "anomaly": "tiny", "proto": "tcp"},
        frozenset({"tally-db-unauthorized-access", "ip-tiny-first-fragment"})),
    "d15-overlapping-fragments": Scenario(
        overlapping_fragments, "ip-fragment-overlap", "high",
        {"kind": "net.fragment", "src_ip": ATTACKER, "anomaly": "overlap"},
        frozenset({"ip-fragment-overlap", "ip-tiny-first-fragment"})),
    "d17-new-station": Scenario(
        new_station, "arp-new-station", "medium",
        {"kind": "net.station", "sender_mac": "02:00:00:00:09:99", "sender_ip": "10.20.0.199"},
        frozenset({"arp-new-station"})),
    "d17-flip-flop": Scenario(
        flip_flop, "arp-flip-flop", "high",
        {"kind": "net.station", "sender_ip": "10.20.0.21", "sender_mac": "02:00:00:00:01:15",
         "previous_mac": ATTACKER_MAC},
        frozenset({"arp-flip-flop", "arp-address-changed-mac"})),
    # a flip-flop is never part of a segment being learned: reported from the start
    "d17-flip-flop-in-the-first-minute": Scenario(
        flip_flop_at_once, "arp-flip-flop", "high",
        {"kind": "net.station", "sender_ip": "10.20.0.21", "sender_mac": "02:00:00:00:01:15",
         "previous_mac": ATTACKER_MAC},
        frozenset({"arp-flip-flop", "arp-address-changed-mac"})),
    "d16-rogue-router-advert": Scenario(
        rogue_router_advert, "ipv6-rogue-router-advert", "critical",
        {"kind": "net.ndp", "op": "router_advert", "mac": ATTACKER_MAC, "src_ip": "fe80::66"},
        frozenset({"ipv6-rogue-router-advert"})),
    "d16-ndp-gateway-spoofed": Scenario(
        ndp_spoof("2001:db8:20::1"), "ndp-gateway-spoofed", "critical",
        {"kind": "net.ndp", "target_ip": "2001:db8:20::1", "mac": ATTACKER_MAC},
        frozenset({"ndp-gateway-spoofed"}), lists=DUAL_STACK),
    "d16-ndp-tally-server-spoofed": Scenario(
        ndp_spoof("2001:db8:20::10"), "ndp-tally-server-spoofed", "critical",
        {"kind": "net.ndp", "target_ip": "2001:db8:20::10", "mac": ATTACKER_MAC},
        frozenset({"ndp-tally-server-spoofed"}), lists=DUAL_STACK),
    "d15-ipv6-header-chain-syn": Scenario(
        ipv6_chain_db_syn, "tally-db-unauthorized-access", "critical",
        {"src_ip": ATTACKER6, "dst_ip": TALLY6, "dst_port": 5432},
        frozenset({"tally-db-unauthorized-access"}),
        lists={**DUAL_STACK, "tally_server": [TALLY, TALLY6]}),
    "d15-dns-in-two-fragments": Scenario(
        fragmented_dns, "dns-query-outside-allowed-domains", "medium",
        {"qname": "hidden.exfil-example.net", "src_ip": TALLY},
        frozenset({"dns-query-outside-allowed-domains"})),
    "d15-dns-over-tcp-split": Scenario(
        split_tcp_dns, "dns-query-outside-allowed-domains", "medium",
        {"qname": "tcp-hidden.exfil-example.net", "qtype": "TXT", "src_ip": TALLY},
        frozenset({"dns-query-outside-allowed-domains"})),
    "d14-rogue-dhcp": Scenario(
        rogue_dhcp, "rogue-dhcp-server", "critical", {"src_ip": ATTACKER, "src_port": 67},
        frozenset({"rogue-dhcp-server"})),
    **{f"d14-rogue-dhcp6-from-{sport}": Scenario(
        rogue_dhcp6(sport), "rogue-dhcp-server", "critical",
        {"src_ip": "fe80::66", "src_port": sport, "dst_port": 546},
        # the link-local address the daemon learns from the interface, as it does live
        frozenset({"rogue-dhcp-server"}), lists={"tally_server": [TALLY, "fe80::10"]})
       for sport in (547, 40433)},
    "d16-ndp-address-changed-mac": Scenario(
        ndp_takeover, "ndp-address-changed-mac", "medium",
        {"kind": "net.ndp", "op": "neighbor_advert", "target_ip": "fe80::21",
         "mac": ATTACKER_MAC},
        frozenset({"ndp-address-changed-mac"})),
    "d17-mac-flooding": Scenario(
        mac_flood, "mac-flooding", "high", {"kind": "net.station", "change": "new"},
        # each made-up MAC is also a new station, those past the storm limit folded
        frozenset({"mac-flooding", "arp-new-station"}), count=50),
    # no segment introduces 200 stations within a minute: learning ends, the flood shows
    "d17-mac-flooding-while-learning": Scenario(
        mac_flood_from_the_start, "mac-flooding", "high",
        {"kind": "net.station", "change": "new"},
        frozenset({"mac-flooding", "arp-new-station"}), count=50),
    "d16-icmp-redirect": Scenario(
        icmp_redirect, "icmp-redirect-to-tally-server", "high",
        {"kind": "net.icmp", "src_ip": GATEWAY, "type": 5, "target_ip": ATTACKER,
         "redirected_ip": CENTRAL},
        frozenset({"icmp-redirect-to-tally-server"})),
    "d16-icmp6-redirect": Scenario(
        icmp6_redirect, "icmp-redirect-to-tally-server", "high",
        {"kind": "net.ndp", "op": "redirect", "src_ip": "fe80::1", "target_ip": "fe80::66",
         "redirected_ip": "2001:db8:99::50", "mac": ATTACKER_MAC},
        frozenset({"icmp-redirect-to-tally-server"}), lists=DUAL_STACK),
    "d14-dns-answer-from-impostor": Scenario(
        dns_spoof, "dns-answer-from-unknown-server", "high",
        {"src_ip": ATTACKER, "dst_ip": TALLY, "is_response": True},
        frozenset({"dns-answer-from-unknown-server", "udp-probe-of-tally-server"})),
    "d14-ntp-from-impostor": Scenario(
        ntp_spoof, "ntp-from-unlisted-server", "high", {"src_ip": ATTACKER, "src_port": 123},
        frozenset({"ntp-from-unlisted-server"})),
    "d07-udp-probe-of-tftp": Scenario(
        udp_probe_tftp, "udp-probe-of-tally-server", "medium",
        {"src_ip": ATTACKER, "dst_port": 69}, frozenset({"udp-probe-of-tally-server"})),
    "d07-tftp-from-tally-server": Scenario(
        tftp_from_tally, "tftp-from-tally-server", "high",
        {"src_ip": TALLY, "dst_ip": "10.20.0.40", "dst_port": 69, "proto": "udp"},
        # the request is also a destination the site does not allow; the answer, from a
        # port of its own, is the request's exchange, not a probe of the tally server
        frozenset({"tftp-from-tally-server", "tally-outbound-unexpected-internal"})),
    "d08-ping-tunnel": Scenario(
        ping_tunnel, "tally-ping-to-internet", "high",
        {"src_ip": TALLY, "dst_ip": "198.51.100.66", "type": 8},
        frozenset({"tally-ping-to-internet"})),
    "d05-sctp-scan": Scenario(
        sctp_scan, "unusual-protocol-to-tally-server", "medium",
        {"src_ip": ATTACKER, "dst_ip": TALLY, "proto": "sctp"},
        frozenset({"unusual-protocol-to-tally-server", "port-scan-of-tally-server",
                   "scan-ended"})),
    "d08-gre-tunnel-out": Scenario(
        gre_tunnel_out, "tally-outbound-unexpected-destination", "high",
        {"src_ip": TALLY, "dst_ip": "198.51.100.77", "proto": "gre", "dst_port": 0},
        frozenset({"tally-outbound-unexpected-destination"})),
    "d14-udp-probe": Scenario(
        udp_probe, "udp-probe-of-tally-server", "medium", {"src_ip": ATTACKER, "dst_port": 161},
        frozenset({"udp-probe-of-tally-server"})),
    "d05-host-sweep": Scenario(
        host_sweep, "host-sweep", "high", {"src_ip": TALLY, "kind": "net.icmp", "type": 8},
        frozenset({"host-sweep"}), count=25),
    "d05-timestamp-sweep": Scenario(
        timestamp_sweep, "host-sweep", "high", {"src_ip": TALLY, "kind": "net.icmp", "type": 13},
        frozenset({"host-sweep"}), count=25),
    "d05-arp-slow-sweep": Scenario(
        arp_slow_sweep, "arp-slow-sweep", "high",
        {"kind": "net.arp", "sender_ip": ATTACKER, "sender_mac": ATTACKER_MAC},
        frozenset({"arp-slow-sweep"}), count=50),
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
        {"kind": "net.established", "src_ip": ADMIN, "dst_ip": TALLY, "dst_port": 23,
         "src_port": 46000, "proto": "tcp"},
        frozenset({"cleartext-admin-protocol", "tally-unexpected-listening-port"})),
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
    configs: dict[str, Path] = {}
    for name, sc in SCENARIOS.items():
        c = Capture()
        sc.build(c)
        pcaps[name] = c.write(folder / f"{name}.pcap")
        configs[name] = _site_config(folder, name, sc.lists) if sc.lists else EXAMPLE_CONFIG
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(pcaps, pool.map(lambda n: replay(pcaps[n], config=configs[n]), pcaps),
                        strict=True))
    return done


def _site_config(folder: Path, name: str, lists: dict[str, list[Any]]) -> Path:
    cfg = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    cfg["lists"].update(lists)
    cfg["rules"]["paths"] = [str(EXAMPLE_CONFIG.parent / p) for p in cfg["rules"]["paths"]]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


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


def test_scan_attempts_are_not_reported_as_reached(
        replayed: dict[str, list[dict[str, Any]]]) -> None:
    """#17.7: a SYN scan raises no critical alert for the closed database port, no
    clear-text alert for resets, and counts each port once despite the scanner's retries."""
    alerts = replayed["d05-syn-scan-closed-database"]
    assert not [a for a in alerts if a["severity"] == "critical"]
    (attempt,) = [a for a in alerts if a["rule"] == "tally-db-access-attempt"]
    assert attempt["severity"] == "medium" and "not accepted" in attempt["title"]
    assert attempt["event"]["established"] is False
    # one incident: every alert about the scanning source carries the same key
    mine = [a for a in alerts if a["event"].get("src_ip") == ATTACKER]
    assert len({a["rule"] for a in mine}) >= 3
    assert {a.get("incident") for a in mine} == {f"source {ATTACKER}"}


def test_large_upload_measures_the_bytes_sent(replayed: dict[str, list[dict[str, Any]]]) -> None:
    """The threshold alert carries the total (frame lengths on the wire), over 50 MB."""
    (alert,) = [a for a in replayed["d08-large-upload"] if a["rule"] == "tally-large-upload"]
    assert alert["threshold"]["measure"] == "sum"
    assert 55_000_000 <= alert["threshold"]["value"] <= 57_000_000
    assert alert["group"] == {"dst_ip": "198.51.100.7"}


def test_incident_key_becomes_an_alertmanager_label(
        replayed: dict[str, list[dict[str, Any]]]) -> None:
    """Alertmanager can group one scan's alerts by the incident label."""
    from sentinel.alert import Alert
    from sentinel.config import HostConfig
    from sentinel.sinks.alertmanager import am_item

    host = HostConfig(name="tally-01", addresses=(), site="kota-contoh")
    labels = [am_item(Alert.from_dict(a), host)["labels"]
              for a in replayed["d05-syn-scan-closed-database"]]
    assert {lab.get("incident") for lab in labels} == {f"source {ATTACKER}"}
    # the label the routing groups by (alertmanager.yml: group_by [site, group])
    assert {lab["group"] for lab in labels} == {f"source {ATTACKER}"}
    assert len({lab["alertname"] for lab in labels}) >= 3
