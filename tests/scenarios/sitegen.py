"""Sites that are not the reference one: random addressing plans, and the
reference site's captures re-addressed to them.

``make_site(seed)`` draws a site deterministically from its seed: IPv4
(seeds 0, 3, 6, ...), IPv6 (1, 4, 7, ...) or dual-stack (2, 5, 8, ...) — a home
network in private or unique-local space, a counting network, an admin
network and another internal subnet inside it, the tally server, gateway,
resolver, NTP and app server at random places in the counting network, a
central server on the internet, random MACs for the tally server and the
gateway. Ports, domains and schedules stay those of the reference site.

``Site.readdress(frame, family)`` rewrites one captured frame of the reference
site: every address moves to its counterpart (a role to the same role, a
counting-network host to the same offset in the site's counting network, an
internet host to an internet host), IPv4 becomes IPv6 for an IPv6 frame (ICMP
echo becomes ICMPv6 echo), the two site MACs move. Checksums are left as they
are: sentinel does not read them.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network

REF_HOME = ipaddress.IPv4Network("10.20.0.0/16")
REF_COUNTING = ipaddress.IPv4Network("10.20.0.0/24")
REF_ADMIN = ipaddress.IPv4Network("10.20.1.0/28")
REF_ROLES = {"tally": "10.20.0.10", "gateway": "10.20.0.1", "dns": "10.20.0.2",
             "ntp": "10.20.0.3", "app": "10.20.0.11", "central": "203.0.113.50"}
REF_TALLY_MAC, REF_GATEWAY_MAC = "02:00:00:00:00:10", "02:00:00:00:00:01"
#: offsets in the counting network that the scenarios use for ordinary hosts
#: (stations, the attacker, sweep targets): no role is drawn there
GENERIC = {0, 21, 40, 50, 66, 99, *range(100, 141), 200, 255}
#: internet hosts of the scenarios, as IPv6: embedded in a documentation prefix
OUTSIDE6 = ipaddress.IPv6Network("2001:db8:ff00::/40")
ICMP_TO_V6 = {8: 128, 0: 129, 3: 1, 11: 3}


@dataclass(frozen=True)
class Plan:
    """One address family of a site."""

    home: Net
    counting: Net
    admin: Net
    other: Net  # internal, outside the counting and admin networks
    roles: dict[str, Addr]

    def map(self, ref: ipaddress.IPv4Address) -> Addr:
        """The counterpart at this site of a reference-site address."""
        for role, text in REF_ROLES.items():
            if ref == ipaddress.IPv4Address(text):
                return self.roles[role]
        for ref_net, net in ((REF_COUNTING, self.counting), (REF_ADMIN, self.admin)):
            if ref in ref_net:
                return net.network_address + (int(ref) - int(ref_net.network_address))
        if ref in REF_HOME:
            off = (int(ref) - int(REF_HOME.network_address)) % self.other.num_addresses
            return self.other.network_address + off
        if self.home.version == 4:
            return ref  # the internet stays the internet
        return OUTSIDE6.network_address + int(ref)


@dataclass(frozen=True)
class Site:
    seed: int
    family: str  # ipv4 | ipv6 | dual
    plans: dict[int, Plan]  # by IP version
    tally_mac: str
    gateway_mac: str
    name: str = field(default="")

    def families(self) -> list[int]:
        return sorted(self.plans)

    def _all(self, role: str) -> list[str]:
        return [str(p.roles[role]) for _, p in sorted(self.plans.items())]

    def lists(self) -> dict[str, list[Any]]:
        """The config's lists for this site (the reference's, re-addressed)."""
        def ep(role: str, port: int) -> list[str]:
            return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in self._all(role)]
        nets = {v: p for v, p in sorted(self.plans.items())}
        return {
            "tally_server": self._all("tally"),
            "tally_mac": [self.tally_mac],
            "gateway_ip": self._all("gateway"),
            "gateway_mac": [self.gateway_mac],
            "counting_net": [str(p.counting) for p in nets.values()],
            "admin_net": [str(p.admin) for p in nets.values()],
            "app_server": self._all("app"),
            "dns_servers": self._all("dns"),
            "ntp_servers": self._all("ntp"),
            # the reference site's DHCP answers come from its gateway
            "dhcp_servers": self._all("gateway"),
            "central_servers": self._all("central"),
            "allowed_outbound": ep("central", 443) + ep("dns", 53) + ep("ntp", 123),
            "allowed_domains": ["kpu.go.id"],
            "tally_services": [22, 443, 5432],
            "tally_db_ports": [5432],
            "tally_web_ports": [443],
            "ssh_ports": [22],
            "login_accounts": ["operator"],
        }

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (config.example.yaml as a mapping) with this site's facts."""
        config["host"]["name"] = self.name
        config["host"]["addresses"] = self._all("tally")
        config["network"]["home_nets"] = [str(p.home) for _, p in sorted(self.plans.items())]
        config["lists"] = self.lists()
        return config

    def map_ip(self, ref: str, version: int) -> str:
        return str(self.plans[version].map(ipaddress.IPv4Address(ref)))

    def map_mac(self, mac: str) -> str:
        return {REF_TALLY_MAC: self.tally_mac, REF_GATEWAY_MAC: self.gateway_mac}.get(mac, mac)

    # -- frames ------------------------------------------------------------------------

    def readdress(self, frame: bytes, version: int) -> bytes:
        """A reference-site Ethernet frame re-addressed for this site's IP ``version``
        (ARP stays IPv4: there is no ARP in IPv6)."""
        macs = {_mac(REF_TALLY_MAC): _mac(self.tally_mac),
                _mac(REF_GATEWAY_MAC): _mac(self.gateway_mac)}
        dst, src, etype = frame[0:6], frame[6:12], frame[12:14]
        eth = macs.get(dst, dst) + macs.get(src, src)
        body = frame[14:]
        if etype == b"\x08\x06":  # ARP
            plan = self.plans[4]
            sha, spa, tha, tpa = body[8:14], body[14:18], body[18:24], body[24:28]
            body = (body[:8] + macs.get(sha, sha) + _v4(plan, spa) + macs.get(tha, tha)
                    + _v4(plan, tpa) + body[28:])
            return eth + etype + body
        if etype != b"\x08\x00":
            return frame
        if version == 4:
            plan = self.plans[4]
            ihl = (body[0] & 0x0F) * 4
            hdr = bytearray(body[:ihl])
            hdr[12:16], hdr[16:20] = _v4(plan, body[12:16]), _v4(plan, body[16:20])
            hdr[10:12] = b"\0\0"
            hdr[10:12] = struct.pack("!H", _checksum(bytes(hdr)))
            rest = body[ihl:]
            if body[9] == 1 and rest[:1] == b"\x05" and len(rest) >= 28:
                # a redirect: its new gateway and the header it quotes move too
                rest = (rest[:4] + _v4(plan, rest[4:8]) + rest[8:20] + _v4(plan, rest[20:24])
                        + _v4(plan, rest[24:28]) + rest[28:])
            return eth + etype + bytes(hdr) + rest
        plan = self.plans[6]
        ihl = (body[0] & 0x0F) * 4
        total = struct.unpack("!H", body[2:4])[0]
        proto = body[9]
        payload = bytearray(body[ihl:])
        if proto == 1 and payload:
            payload[0] = ICMP_TO_V6.get(payload[0], payload[0])
            proto = 58
        src6 = plan.map(ipaddress.IPv4Address(body[12:16])).packed
        dst6 = plan.map(ipaddress.IPv4Address(body[16:20])).packed
        hdr6 = struct.pack("!IHBB", 6 << 28, total - ihl, proto, 64) + src6 + dst6
        return eth + b"\x86\xdd" + hdr6 + bytes(payload)


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _v4(plan: Plan, raw: bytes) -> bytes:
    return plan.map(ipaddress.IPv4Address(raw)).packed


def _checksum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _subnets(rng: random.Random, home: Net, prefixes: list[int]) -> list[Net]:
    """Non-overlapping subnets of ``home``, one of each prefix length, at random places."""
    out: list[Net] = []
    while len(out) < len(prefixes):
        plen = prefixes[len(out)]
        count = 2 ** (plen - home.prefixlen)
        idx = rng.randrange(count)
        size = 2 ** (home.max_prefixlen - plen)
        net = ipaddress.ip_network(f"{home.network_address + idx * size}/{plen}")
        if not any(net.overlaps(o) for o in out):
            out.append(net)
    return out


def _plan4(rng: random.Random) -> Plan:
    home: Net = rng.choice([
        ipaddress.IPv4Network(f"10.{rng.randrange(256)}.0.0/16"),
        ipaddress.IPv4Network(f"172.{rng.randrange(16, 32)}.0.0/16"),
        ipaddress.IPv4Network("192.168.0.0/16"),
    ])
    counting, admin, other = _subnets(rng, home, [rng.choice([22, 23, 24]),
                                                  rng.choice([27, 28, 29]), 24])
    pool = [o for o in range(1, 255) if o not in GENERIC]
    offsets = rng.sample(pool, 5)
    roles: dict[str, Addr] = {r: counting.network_address + o for r, o in
                              zip(("tally", "gateway", "dns", "ntp", "app"), offsets,
                                  strict=True)}
    roles["central"] = ipaddress.IPv4Address(f"192.0.2.{rng.randrange(1, 255)}")
    return Plan(home, counting, admin, other, roles)


def _plan6(rng: random.Random) -> Plan:
    home: Net = ipaddress.IPv6Network(f"fd{rng.randrange(256):02x}:{rng.randrange(65536):x}:"
                                      f"{rng.randrange(65536):x}::/48")
    counting, admin, other = _subnets(rng, home, [64, rng.choice([64, 112, 120]), 64])
    roles: dict[str, Addr] = {}
    for r in ("tally", "gateway", "dns", "ntp", "app"):
        # far above the small offsets the scenarios' ordinary hosts take
        while (a := counting.network_address + rng.randrange(0x10000, 2**64 - 1)) \
                in roles.values():
            pass
        roles[r] = a
    roles["central"] = ipaddress.IPv6Address(f"2001:db8:c0:{rng.randrange(65536):x}::"
                                             f"{rng.randrange(1, 65536):x}")
    return Plan(home, counting, admin, other, roles)


def _site_mac(rng: random.Random) -> str:
    # 0e: locally administered, unicast, and unlike any MAC the scenarios use
    return "0e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))


def make_site(seed: int) -> Site:
    """The site of ``seed``: the same seed always gives the same site."""
    rng = random.Random(seed)
    family = ("ipv4", "ipv6", "dual")[seed % 3]
    plans: dict[int, Plan] = {}
    if family in ("ipv4", "dual"):
        plans[4] = _plan4(rng)
    if family in ("ipv6", "dual"):
        plans[6] = _plan6(rng)
    tally_mac = _site_mac(rng)
    while (gateway_mac := _site_mac(rng)) == tally_mac:
        pass
    return Site(seed, family, plans, tally_mac, gateway_mac, f"tally-site-{seed:02d}")


#: event fields holding addresses, and MACs, that move with the site
ADDRESS_FIELDS = ("src_ip", "dst_ip", "sender_ip", "target_ip", "redirected_ip")
MAC_FIELDS = ("sender_mac", "target_mac")
#: what identifies an alert across sites (titles, ids and times say the same in
#: other words; byte totals differ by the IPv6 header's extra 20 bytes a frame)
COMPARED = ("kind", "proto", "src_port", "dst_port", "direction", "src_internal",
            "dst_internal", "qname", "qtype", "is_response", "op", "type", "code", "final",
            "tcp_flags", *ADDRESS_FIELDS, *MAC_FIELDS)


def alert_key(alert: dict[str, Any], move: Callable[[str, Any], Any] | None = None
              ) -> tuple[Any, ...]:
    """An alert as compared across sites; ``move`` re-addresses a reference alert."""
    ev = alert["event"]
    fields = []
    for k in COMPARED:
        if k in ev:
            v = ev[k]
            fields.append((k, move(k, v) if move else v))
    group = alert.get("group") or {}
    moved_group = tuple(sorted((k, move(k, v) if move else v) for k, v in group.items()))
    return (alert["rule"], alert["severity"], alert["count"], tuple(fields), moved_group)


def mover(site: Site, version: int) -> Callable[[str, Any], Any]:
    """Moves a reference alert's field values to ``site`` for IP ``version``."""
    def move(key: str, value: Any) -> Any:
        if key in ADDRESS_FIELDS and isinstance(value, str):
            if ":" in value:
                return value
            v = 4 if key in ("sender_ip", "target_ip") else version
            return site.map_ip(value, v)
        if key in MAC_FIELDS and isinstance(value, str):
            return site.map_mac(value)
        if key == "type" and version == 6 and isinstance(value, int):
            return ICMP_TO_V6.get(value, value)
        return value
    return move
