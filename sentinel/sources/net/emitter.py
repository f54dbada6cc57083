"""Turning decoded packets into the network events of CONTRACT §3.

:class:`Endpoints` says, for an address, its text form, whether it is one of
the host's own addresses and whether it is in ``network.home_nets`` — cached,
since the same few addresses recur in almost every packet.
:class:`EventMaker` builds each kind's fields in the order of ``KIND_FIELDS``,
counts it in ``sentinel_events_total`` and hands it to ``emit``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

from sentinel.config import Config, IPAddress
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net import stations
from sentinel.sources.net.scans import ScanTracker
from sentinel.sources.net.stations import StationTable

#: Addresses remembered before the cache is cleared (bounds memory on scans).
CACHE_SIZE = 65536

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}

#: (text, is one of host.addresses, is in home_nets)
AddrInfo = tuple[str, bool, bool]


class Endpoints:
    """Classifies raw 4- or 16-byte addresses against the host and home networks."""

    def __init__(self, config: Config) -> None:
        #: (the host's own addresses, packed; the cache of answers made with them):
        #: one attribute, so that :meth:`set_host` swaps both at once for a capture
        #: thread reading them
        self._state: tuple[frozenset[bytes], dict[bytes, AddrInfo]] = (
            frozenset(a.packed for a in config.host.addresses), {})
        self._nets4 = [(int(n.network_address), int(n.netmask)) for n in config.network.home_nets
                       if n.version == 4]
        self._nets6 = [(int(n.network_address), int(n.netmask)) for n in config.network.home_nets
                       if n.version == 6]

    def set_host(self, addresses: Iterable[IPAddress]) -> None:
        """Count ``addresses`` as the host's own from the next packet on (an address the
        kernel gave a capture interface while the daemon ran), without a new capture."""
        self._state = (frozenset(a.packed for a in addresses), {})

    def info(self, raw: bytes) -> AddrInfo:
        """Text, is-host and is-internal for one address."""
        host, cache = self._state
        got = cache.get(raw)
        if got is not None:
            return got
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        if len(raw) == 4:
            text = socket.inet_ntop(socket.AF_INET, raw)
            nets = self._nets4
        else:
            text = ipv6_text(raw)
            nets = self._nets6
        value = int.from_bytes(raw, "big")
        internal = any(value & mask == net for net, mask in nets)
        got = (text, raw in host, internal)
        cache[raw] = got
        return got


#: The first 80 bits of an IPv4-mapped or IPv4-compatible IPv6 address.
_V4_IN_V6 = bytes(10)


def ipv6_text(raw: bytes) -> str:
    """RFC 5952 text of a 16-byte address, as the config writes it. The C library's is
    the same, and ten times quicker, for every address but those whose first 80 bits
    are zero, which it writes with a dotted IPv4 tail (``::ffff:1.2.3.4``)."""
    if raw[:10] == _V4_IN_V6:
        return str(ipaddress.IPv6Address(raw))
    return socket.inet_ntop(socket.AF_INET6, raw)


def direction(src_host: bool, dst_host: bool) -> str:
    """``inbound``, ``outbound``, ``local`` or ``transit`` (CONTRACT §3)."""
    if dst_host:
        return "local" if src_host else "inbound"
    return "outbound" if src_host else "transit"


class EventMaker:
    """Builds network events and passes them to ``emit``; ``iface`` is set per packet."""

    def __init__(self, config: Config, metrics: Metrics, emit: Callable[[Event], None],
                 iface: str, ends: Endpoints | None = None) -> None:
        self.host = config.host.name
        #: shared by a source's capture threads, so that new own addresses reach all
        self.ends = ends if ends is not None else Endpoints(config)
        self.emit = emit
        self.iface = iface
        self._metrics = metrics
        self._counters: dict[str, Any] = {}
        #: every source's connections, summed up as net.scan when a scan ends
        self.scans = ScanTracker(self.scan)
        #: MACs and addresses of the segment, from ARP and from the frames that open
        #: flows: new stations and flip-flops
        self.stations = StationTable(self.station, learn=stations.LEARN)

    def _send(self, kind: str, ts: float, fields: dict[str, Any]) -> None:
        counter = self._counters.get(kind)
        if counter is None:
            counter = self._counters[kind] = self._metrics.events.labels("network", kind)
        counter.inc()
        self.emit(Event(kind, ts, self.host, "network", fields))

    def _pair(self, src: bytes, dst: bytes) -> dict[str, Any]:
        s_text, s_host, s_int = self.ends.info(src)
        d_text, d_host, d_int = self.ends.info(dst)
        return {"src_ip": s_text, "dst_ip": d_text, "direction": direction(s_host, d_host),
                "src_internal": s_int, "dst_internal": d_int}

    # The three connection kinds below build their fields in one dict each, not from
    # _conn_fields merged in: one of them goes out for about every seventh packet.

    def connection(self, ts: float, proto: str, src: bytes, sport: int, dst: bytes, dport: int,
                   flags: str, iface: str, probe: bool = False, midstream: bool = False) -> None:
        """``net.connection``: a TCP SYN, a stealth-scan probe (``probe``), a TCP flow
        picked up after its SYN (``midstream``), or the first UDP packet of a flow."""
        if not midstream:
            self.scans.connection(ts, src, dst, dport, probe)
        s_text, s_host, s_int = self.ends.info(src)
        d_text, d_host, d_int = self.ends.info(dst)
        self._send("net.connection", ts, {
            "proto": proto, "src_ip": s_text, "src_port": sport, "dst_ip": d_text,
            "dst_port": dport, "direction": direction(s_host, d_host), "src_internal": s_int,
            "dst_internal": d_int, "iface": iface, "tcp_flags": flags, "probe": probe,
            "midstream": midstream,
        })

    def established(self, ts: float, src: bytes, sport: int, dst: bytes, dport: int,
                    flags: str, iface: str, midstream: bool) -> None:
        """``net.established``: a TCP connection the other side accepted; ``src`` opened it."""
        if not midstream:
            self.scans.answered(src)
        s_text, s_host, s_int = self.ends.info(src)
        d_text, d_host, d_int = self.ends.info(dst)
        self._send("net.established", ts, {
            "proto": "tcp", "src_ip": s_text, "src_port": sport, "dst_ip": d_text,
            "dst_port": dport, "direction": direction(s_host, d_host), "src_internal": s_int,
            "dst_internal": d_int, "iface": iface, "tcp_flags": flags, "midstream": midstream,
        })

    def synack(self, ts: float, src: bytes, sport: int, dst: bytes, dport: int, flags: str,
               iface: str) -> None:
        """``net.tcp_synack``: ``src`` is the side answering a SYN."""
        s_text, s_host, s_int = self.ends.info(src)
        d_text, d_host, d_int = self.ends.info(dst)
        self._send("net.tcp_synack", ts, {
            "src_ip": s_text, "src_port": sport, "dst_ip": d_text, "dst_port": dport,
            "direction": direction(s_host, d_host), "src_internal": s_int,
            "dst_internal": d_int, "iface": iface, "tcp_flags": flags,
        })

    def flow(self, ts: float, proto: str, src: bytes, sport: int, dst: bytes, dport: int,
             bytes_out: int, bytes_in: int, delta_out: int, delta_in: int, packets: int,
             duration: float, final: bool, iface: str, established: bool = False) -> None:
        """``net.flow``: totals of a flow so far (``final`` once it has ended), and the
        bytes each way since its previous report (so that sums over reports are exact);
        ``established``: the other side accepted (TCP) or answered (UDP)."""
        s_text, s_host, s_int = self.ends.info(src)
        d_text, d_host, d_int = self.ends.info(dst)
        self._send("net.flow", ts, {
            "proto": proto, "src_ip": s_text, "src_port": sport, "dst_ip": d_text,
            "dst_port": dport, "direction": direction(s_host, d_host), "src_internal": s_int,
            "dst_internal": d_int, "bytes_out": bytes_out, "bytes_in": bytes_in,
            "bytes_out_delta": delta_out, "bytes_in_delta": delta_in, "packets": packets,
            "duration": round(max(duration, 0.0), 6), "final": final, "iface": iface,
            "established": established,
        })

    def dns(self, ts: float, src: bytes, dst: bytes, qname: str, qtype: str, is_response: bool,
            rcode: str) -> None:
        """``net.dns``: one question of a query or response."""
        self._send("net.dns", ts, {
            **self._pair(src, dst), "qname": qname, "qtype": qtype, "is_response": is_response,
            "rcode": rcode, "iface": self.iface,
        })

    def icmp(self, ts: float, src: bytes, dst: bytes, icmp_type: int, code: int,
             target: bytes = b"", redirected: bytes = b"") -> None:
        """``net.icmp``: one ICMP or ICMPv6 message; a redirect's new gateway (``target``)
        and the destination it moves there (``redirected``), None for other messages."""
        self._send("net.icmp", ts, {
            **self._pair(src, dst), "type": icmp_type, "code": code,
            "target_ip": self.ends.info(target)[0] if target else None,
            "redirected_ip": self.ends.info(redirected)[0] if redirected else None,
            "iface": self.iface,
        })

    def scan(self, ts: float, src: bytes, dst: bytes | None, ports: int, hosts: int,
             hosts_capped: bool, connections: int, probes: int, answered: int,
             duration: float) -> None:
        """``net.scan``: the totals of a source's scan, once it has gone quiet."""
        s_text, _, s_int = self.ends.info(src)
        self._send("net.scan", ts, {
            "src_ip": s_text, "src_internal": s_int,
            "dst_ip": self.ends.info(dst)[0] if dst is not None else None,
            "ports": ports, "hosts": hosts, "hosts_capped": hosts_capped,
            "connections": connections, "probes": probes, "answered": answered,
            # milliseconds: a scan's length is read by people ("over 0.042 s")
            "duration": round(duration, 3), "iface": self.iface,
        })

    def station(self, ts: float, addr: bytes, mac: bytes, previous: bytes, change: str) -> None:
        """``net.station``: a new MAC on the segment, or an address flip-flopping;
        ``addr`` the sender's IPv4 or IPv6 address, empty when its frame had none."""
        self._send("net.station", ts, {
            "change": change, "sender_ip": self.ends.info(addr)[0] if addr else None,
            "sender_mac": mac.hex(":"),
            "previous_mac": previous.hex(":") if previous else None, "iface": self.iface,
        })

    def ndp(self, ts: float, src: bytes, dst: bytes, op: str, target: bytes,
            mac: bytes, redirected: bytes = b"") -> None:
        """``net.ndp``: an IPv6 neighbour-discovery message; ``mac`` is the link-layer
        address it claims (source option of a router advert, target option of a neighbour
        advert), empty when it carries none; ``target_ip`` None for router messages, a
        redirect's better first hop for ``redirected_ip`` (None for other messages)."""
        self._send("net.ndp", ts, {
            **self._pair(src, dst), "op": op,
            "target_ip": self.ends.info(target)[0] if len(target) == 16 else None,
            "redirected_ip": self.ends.info(redirected)[0] if redirected else None,
            "mac": mac.hex(":"), "iface": self.iface,
        })

    def fragment(self, ts: float, src: bytes, dst: bytes, proto: int, anomaly: str,
                 version: int) -> None:
        """``net.fragment``: an IP fragment that is an evasion signal (tiny or overlapping)."""
        self._send("net.fragment", ts, {
            **self._pair(src, dst), "proto": _PROTO_NAMES.get(proto) or str(proto),
            "anomaly": anomaly, "ip_version": version, "iface": self.iface,
        })

    def arp(self, ts: float, op: str, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
        """``net.arp``: one ARP request or reply (Ethernet/IPv4)."""
        self.stations.arp(ts, sha, spa)
        self._send("net.arp", ts, {
            "op": op, "sender_ip": socket.inet_ntop(socket.AF_INET, spa),
            "sender_mac": sha.hex(":"), "target_ip": socket.inet_ntop(socket.AF_INET, tpa),
            "target_mac": tha.hex(":"), "iface": self.iface,
        })
