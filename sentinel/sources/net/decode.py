"""A hand-written packet decoder: raw frame bytes to flow updates and events.

Every function takes the buffer, the offset where its header starts and the
offset where the captured bytes end (``buf`` may be a whole pcap file or a
capture ring, so nothing is copied but the addresses). A header that does not
fit before ``end`` raises :class:`Malformed`; :meth:`Decoder.handler` wraps a
link type's entry point so that every failure is counted in
``sentinel_decode_errors_total`` and never leaves the loop.

Link types (pcap LINKTYPE numbers): Ethernet with 802.1Q/802.1ad/QinQ tags and
PPPoE, Linux cooked SLL and SLL2, raw IP (101, 228, 229 and the DLT values 12
and 14), BSD NULL and LOOP, PPP and Cisco HDLC. IPv4 and IPv6 fragments are
reassembled as Linux does (:mod:`sentinel.sources.net.reassembly`) and the whole
datagram decoded; IPv6 extension headers are followed as far as the packet goes,
as the kernel does, not to a fixed count. DNS over TCP is read across segments
(:mod:`sentinel.sources.net.tcpdns`).
"""

from __future__ import annotations

import logging
import struct
import traceback
from collections.abc import Callable

from sentinel.metrics import Metrics
from sentinel.sources.net.dns import Malformed, parse_message
from sentinel.sources.net.emitter import EventMaker
from sentinel.sources.net.flows import FlowTable
from sentinel.sources.net.reassembly import Reassembler, v6_chain_truncated
from sentinel.sources.net.tcpdns import TcpDnsStreams

# stdlib logging, which sentinel.logs renders like the rest: a replay without
# decoder bugs need not load the structured-logging stack
log = logging.getLogger("sentinel.net.decode")

_U16 = struct.Struct("!H").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_U32BE = struct.Struct("!I").unpack_from
_IP4 = struct.Struct("!BxHHHxB").unpack_from  # version/ihl, total length, id, frag, protocol
# EtherType, then as _IP4, then TCP ports and data offset + flags after a 20-byte IPv4
# header: the first 48 bytes of most frames, in one call
_ETH_IP4_TCP = struct.Struct("!12xHBxHxxHxB10xHHI4xH").unpack_from
_IP6_TCP = struct.Struct("!4xH34xHHI4xH").unpack_from  # payload length; TCP ports, seq, flags
_IP6 = struct.Struct("!4xHB").unpack_from  # payload length, next header
_TCP = struct.Struct("!HHI4xH").unpack_from  # ports, sequence number, data offset + flags
_UDP = struct.Struct("!HHH").unpack_from  # ports, length
_PORTS = struct.Struct("!HH").unpack_from
#: IP protocols whose header starts with two ports, as UDP's: SCTP, DCCP, UDP-Lite
_PORTED = frozenset({132, 33, 136})
_NO_NEXT_HEADER = 59
#: the first byte from which a destination is multicast (or IPv4's reserved and
#: broadcast range), by address length: 224.0.0.0/4 and up, ff00::/8
_MULTICAST = {4: 224, 16: 0xFF}
_ARP = struct.Struct("!2xHBBH").unpack_from  # protocol type, hlen, plen, op

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_RAW = 0, 1, 9, 101
LINKTYPE_C_HDLC, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL = 104, 108, 113
LINKTYPE_PPP_HDLC, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 50, 228, 229, 276

#: What each supported link type is called, for the README and the replay summary.
LINK_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "BSD NULL/loopback", LINKTYPE_ETHERNET: "Ethernet (802.1Q, QinQ, PPPoE)",
    LINKTYPE_PPP: "PPP", LINKTYPE_PPP_HDLC: "PPP in HDLC framing", LINKTYPE_RAW: "raw IP",
    12: "raw IP (DLT 12)", 14: "raw IP (DLT 14)", LINKTYPE_C_HDLC: "Cisco HDLC",
    LINKTYPE_LOOP: "OpenBSD LOOP", LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4", LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
_VLAN_TAGS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_PPPOE_SESSION = 0x8864
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057
_IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140, 253, 254))
_NULL_IPV6 = frozenset((10, 24, 28, 30))  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
MAX_TAGS = 8
ARP_OPS = {1: "request", 2: "reply", 3: "rarp-request", 4: "rarp-reply",
           8: "inarp-request", 9: "inarp-reply"}

_TRUNCATED = Malformed("packet cut short")
_E_LINKTYPE = Malformed("link type not supported")
#: What malformed input raises inside the decoder (anything else is a bug).
DECODE_ERRORS = (Malformed, struct.error, IndexError)
_E_IPV4 = Malformed("bad IPv4 header")
_E_IPV6 = Malformed("bad IPv6 header")
_E_TCP_OFFSET = Malformed("TCP data offset below 5")
_E_UDP_LENGTH = Malformed("UDP length below 8")
_E_FRAGMENT_CUT = Malformed("IP fragment cut short by the capture: not reassembled")
_TRANSPORTS = frozenset((6, 17, 58))
_E_NDP_OPTION = Malformed("neighbour discovery option of length 0")
#: ICMP (IPv4) redirect: "send traffic for this destination to that gateway".
_ICMP_REDIRECT = 5
#: ICMPv6 neighbour discovery types: the event's op, and where the options start.
_NDP_OPS = {133: ("router_solicit", 8), 134: ("router_advert", 16),
            135: ("neighbor_solicit", 24), 136: ("neighbor_advert", 24), 137: ("redirect", 40)}

#: Decodes one captured frame: (buf, offset, end, wire length, time).
Handler = Callable[[bytes, int, int, int, float], None]


class Decoder:
    """Parses frames and feeds a :class:`FlowTable` and an :class:`EventMaker`."""

    def __init__(self, flows: FlowTable, maker: EventMaker, metrics: Metrics) -> None:
        self.flows = flows
        self.maker = maker
        self.stations = maker.stations  # every sender MAC: new stations, MAC floods
        self._errors = metrics.decode_errors
        self.defrag = Reassembler(maker, metrics)
        self.tcp_dns = TcpDnsStreams()
        self._logged: set[str] = set()
        #: Failures other than malformed input (decoder bugs): counted as decode
        #: errors too, logged once per exception type.
        self.unexpected = 0
        self._links: dict[int, Handler] = {
            LINKTYPE_ETHERNET: self.ether, LINKTYPE_NULL: self.null, LINKTYPE_LOOP: self.loop,
            LINKTYPE_RAW: self.raw, 12: self.raw, 14: self.raw, LINKTYPE_IPV4: self.raw,
            LINKTYPE_IPV6: self.raw, LINKTYPE_LINUX_SLL: self.sll,
            LINKTYPE_LINUX_SLL2: self.sll2, LINKTYPE_PPP: self.ppp,
            LINKTYPE_PPP_HDLC: self.ppp, LINKTYPE_C_HDLC: self.c_hdlc,
        }

    # -- entry points ----------------------------------------------------------

    def supports(self, linktype: int) -> bool:
        return linktype in self._links

    def link(self, linktype: int) -> Handler:
        """The raw decode function of a link type: it raises :data:`DECODE_ERRORS`.

        An unsupported link type's function raises for every frame.
        """
        return self._links.get(linktype, self._unsupported)

    def _unsupported(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        raise _E_LINKTYPE

    def handler(self, linktype: int) -> Handler:
        """The never-raising decode function for one link type (errors are counted)."""
        link = self.link(linktype)
        errors = self._errors

        def handle(buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
            try:
                link(buf, off, end, wirelen, ts)
            except DECODE_ERRORS:
                errors.inc()
            except Exception as exc:  # a decoder bug must not stop the capture
                self.failed(exc, linktype)

        return handle

    def network_handler(self) -> Callable[[int, bytes, int, int, int, float, int], None]:
        """The never-raising decode function for a frame whose link layer the kernel parsed;
        ``mac`` is where in ``buf`` the sender's MAC is (-1: none), for the station table."""
        errors = self._errors
        frame = self.stations.frame

        def handle(etype: int, buf: bytes, off: int, end: int, wirelen: int, ts: float,
                   mac: int = -1) -> None:
            try:
                if mac >= 0:
                    if etype == ETH_IPV4 and off + 16 <= end:
                        frame(ts, buf[mac : mac + 6], buf[off + 12 : off + 16])
                    elif etype == ETH_IPV6 and off + 24 <= end:
                        frame(ts, buf[mac : mac + 6], buf[off + 8 : off + 24])
                self.network(etype, buf, off, end, wirelen, ts)
            except DECODE_ERRORS:
                errors.inc()
            except Exception as exc:
                self.failed(exc, -1)

        return handle

    def count_error(self) -> None:
        """Count one malformed frame (for loops that call :meth:`link` themselves)."""
        self._errors.inc()

    def failed(self, exc: Exception, linktype: int) -> None:
        """Count a failure that is not malformed input, and log it once per exception type."""
        self._errors.inc()
        self.unexpected += 1
        what = type(exc).__name__
        if what not in self._logged:
            self._logged.add(what)
            log.error("decode_failed", extra={
                "component": "net.decode", "error": repr(exc), "linktype": linktype,
                "exception": "".join(traceback.format_exception(exc))})

    # -- link layers -------------------------------------------------------------

    def ether(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        # Fast path for most of any capture: Ethernet, then IPv4 without options or
        # fragmentation or IPv6 without extension headers, then TCP not on port 53.
        # Anything else, malformed input included, takes the general path below.
        if off + 48 <= end:
            etype, vihl, total, frag, proto, sport, dport, seq, offflags = _ETH_IP4_TCP(buf, off)
            ip = off + 14
            if etype == 0x0800:
                if vihl == 0x45 and not frag & 0x3FFF and proto == 6:
                    if ip + total < end:  # noqa: PLR1730 (min() costs a call per packet)
                        end = ip + total
                    # (the TCP fields read above count only when they lie within the packet)
                    if ip + 34 <= end and sport != 53 and dport != 53:
                        # addresses then ports are contiguous: one slice finds the flow
                        if not self.flows.tcp_known(ts, wirelen, buf[ip + 12 : ip + 24],
                                                    offflags & 0xFF):
                            # a frame opening a flow: is its sender a new station?
                            self.stations.frame(ts, buf[off + 6 : off + 12],
                                                buf[ip + 12 : ip + 16])
                            self.flows.tcp(ts, wirelen, buf[ip + 12 : ip + 16],
                                           buf[ip + 16 : ip + 20], sport, dport,
                                           offflags & 0xFF, seq,
                                           total - 20 - (offflags >> 12 << 2))
                        return
            elif etype == 0x86DD and vihl >> 4 == 6 and frag >> 8 == 6 and ip + 54 <= end:
                plen, sport, dport, seq, offflags = _IP6_TCP(buf, ip)
                if plen >= 20 and ip + 40 + plen >= ip + 54 and sport != 53 and dport != 53:
                    if not self.flows.tcp_known(ts, wirelen, buf[ip + 8 : ip + 44],
                                                offflags & 0xFF):
                        self.stations.frame(ts, buf[off + 6 : off + 12], buf[ip + 8 : ip + 24])
                        self.flows.tcp(ts, wirelen, buf[ip + 8 : ip + 24],
                                       buf[ip + 24 : ip + 40], sport, dport, offflags & 0xFF,
                                       seq, plen - (offflags >> 12 << 2))
                    return
        if off + 14 > end:
            raise _TRUNCATED
        etype = _U16(buf, off + 12)[0]
        if etype == ETH_IPV4:
            if off + 30 <= end:
                self.stations.frame(ts, buf[off + 6 : off + 12], buf[off + 26 : off + 30])
            self.ipv4(buf, off + 14, end, wirelen, ts)
        else:
            if etype == ETH_IPV6 and off + 38 <= end:
                self.stations.frame(ts, buf[off + 6 : off + 12], buf[off + 22 : off + 38])
            self.network(etype, buf, off + 14, end, wirelen, ts)

    def sll(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 16 > end:
            raise _TRUNCATED
        self.network(_U16(buf, off + 14)[0], buf, off + 16, end, wirelen, ts)

    def sll2(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 20 > end:
            raise _TRUNCATED
        self.network(_U16(buf, off)[0], buf, off + 20, end, wirelen, ts)

    def null(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 4 > end:
            raise _TRUNCATED
        family = _U32LE(buf, off)[0]
        if family & 0xFFFF0000:  # written by a host of the other byte order
            family = _U32BE(buf, off)[0]
        self._family(family, buf, off + 4, end, wirelen, ts)

    def loop(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 4 > end:
            raise _TRUNCATED
        self._family(_U32BE(buf, off)[0], buf, off + 4, end, wirelen, ts)

    def _family(self, family: int, buf: bytes, off: int, end: int, wirelen: int,
                ts: float) -> None:
        if family == 2:
            self.ipv4(buf, off, end, wirelen, ts)
        elif family in _NULL_IPV6:
            self.ipv6(buf, off, end, wirelen, ts)

    def raw(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off >= end:
            raise _TRUNCATED
        version = buf[off] >> 4
        if version == 4:
            self.ipv4(buf, off, end, wirelen, ts)
        elif version == 6:
            self.ipv6(buf, off, end, wirelen, ts)
        else:
            msg = f"raw IP frame with version {version}"
            raise Malformed(msg)

    def ppp(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 2 <= end and buf[off] == 0xFF and buf[off + 1] == 0x03:
            off += 2  # HDLC address and control bytes
        if off + 2 > end:
            raise _TRUNCATED
        self._ppp_proto(_U16(buf, off)[0], buf, off + 2, end, wirelen, ts)

    def _ppp_proto(self, proto: int, buf: bytes, off: int, end: int, wirelen: int,
                   ts: float) -> None:
        if proto == _PPP_IPV4:
            self.ipv4(buf, off, end, wirelen, ts)
        elif proto == _PPP_IPV6:
            self.ipv6(buf, off, end, wirelen, ts)

    def c_hdlc(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 4 > end:
            raise _TRUNCATED
        self.network(_U16(buf, off + 2)[0], buf, off + 4, end, wirelen, ts)

    # -- network layer -------------------------------------------------------------

    def network(self, etype: int, buf: bytes, off: int, end: int, wirelen: int,
                ts: float) -> None:
        """Decode from the network header on, given its EtherType."""
        tags = 0
        while etype in _VLAN_TAGS:
            tags += 1
            if off + 4 > end or tags > MAX_TAGS:
                raise _TRUNCATED
            etype = _U16(buf, off + 2)[0]
            off += 4
        if etype == ETH_IPV4:
            self.ipv4(buf, off, end, wirelen, ts)
        elif etype == ETH_IPV6:
            self.ipv6(buf, off, end, wirelen, ts)
        elif etype == ETH_ARP:
            self.arp(buf, off, end, ts)
        elif etype == _PPPOE_SESSION:
            if off + 8 > end:
                raise _TRUNCATED
            self._ppp_proto(_U16(buf, off + 6)[0], buf, off + 8, end, wirelen, ts)

    def ipv4(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 20 > end:
            raise _TRUNCATED
        vihl, total, ident, frag, proto = _IP4(buf, off)
        ihl = (vihl & 15) << 2
        if vihl >> 4 != 4 or ihl < 20 or total < ihl:
            raise _E_IPV4
        end = min(end, off + total)  # drop Ethernet padding
        if off + ihl > end:
            raise _TRUNCATED
        src, dst = buf[off + 12 : off + 16], buf[off + 16 : off + 20]
        if frag & 0x3FFF:  # more fragments, or an offset: a piece of a datagram
            if end < off + total:
                raise _E_FRAGMENT_CUT  # cut by the snaplen: its bytes cannot be rebuilt
            whole = self.defrag.add(ts, 4, src, dst, ident, proto, (frag & 0x1FFF) << 3,
                                    bool(frag & 0x2000), bytes(buf[off + ihl : end]), wirelen)
            if whole is not None:
                data, frames = whole
                self.transport(proto, data, 0, len(data), frames, ts, src, dst, len(data))
            return
        self.transport(proto, buf, off + ihl, end, wirelen, ts, src, dst, off + total)

    def ipv6(self, buf: bytes, off: int, end: int, wirelen: int, ts: float) -> None:
        if off + 40 > end:
            raise _TRUNCATED
        if buf[off] >> 4 != 6:
            raise _E_IPV6
        plen, nh = _IP6(buf, off)
        wire_end = off + 40 + plen if plen else end
        if plen and wire_end < end:
            end = wire_end
        self._ipv6_chain(nh, buf, off + 40, end, wire_end, wirelen, ts,
                         buf[off + 8 : off + 24], buf[off + 24 : off + 40])

    def _ipv6_chain(self, nh: int, buf: bytes, p: int, end: int, wire_end: int, wirelen: int,
                    ts: float, src: bytes, dst: bytes) -> None:
        """Follow extension headers from ``p`` to the transport header.

        Linux sets no limit on how many there are, only the packet's length does
        (13 destination-options headers reach its sockets): so neither does this.
        Each header is at least 8 bytes, so the walk ends.
        """
        while nh not in _TRANSPORTS:
            if p + 8 > end:
                if nh in _IPV6_EXT or nh in {44, 51}:
                    raise _TRUNCATED
                return
            if nh in _IPV6_EXT:
                nh, p = buf[p], p + (buf[p + 1] + 1) * 8
            elif nh == 44:  # fragment header
                offmore = _U16(buf, p + 2)[0]
                if offmore & 0xFFF9:  # an offset or more fragments: not an atomic fragment
                    if end < wire_end:
                        raise _E_FRAGMENT_CUT
                    data = bytes(buf[p + 8 : end])
                    first = not offmore & 0xFFF8
                    whole = self.defrag.add(ts, 6, src, dst, _U32BE(buf, p + 4)[0], buf[p],
                                            offmore & 0xFFF8, bool(offmore & 1), data,
                                            wirelen, first and v6_chain_truncated(buf[p], data))
                    if whole is not None:
                        data, frames = whole
                        self._ipv6_chain(buf[p], data, 0, len(data), len(data), frames, ts,
                                         src, dst)
                    return
                nh, p = buf[p], p + 8
            elif nh == 51:  # authentication header
                nh, p = buf[p], p + (buf[p + 1] + 2) * 4
            else:  # no next header, or another protocol (ESP, SCTP, GRE...): transport's
                break
        if p > end:
            raise _TRUNCATED
        self.transport(nh, buf, p, end, wirelen, ts, src, dst, wire_end)

    def arp(self, buf: bytes, off: int, end: int, ts: float) -> None:
        if off + 8 > end:
            raise _TRUNCATED
        ptype, hlen, plen, op = _ARP(buf, off)
        if ptype != ETH_IPV4 or hlen != 6 or plen != 4:
            return  # ARP for another protocol or hardware: not an event sentinel knows
        if off + 28 > end:
            raise _TRUNCATED
        self.maker.arp(ts, ARP_OPS.get(op) or str(op), buf[off + 8 : off + 14],
                       buf[off + 14 : off + 18], buf[off + 18 : off + 24],
                       buf[off + 24 : off + 28])

    # -- transport layer -----------------------------------------------------------

    def transport(self, proto: int, buf: bytes, off: int, end: int, wirelen: int, ts: float,
                  src: bytes, dst: bytes, wire_end: int) -> None:
        """TCP, UDP, ICMP and ICMPv6 starting at ``off``; other protocols are ignored.

        ``wire_end`` is where the IP packet ends by its own length, captured or not.
        """
        if proto == 6:
            if off + 14 > end:
                raise _TRUNCATED
            sport, dport, seq, offflags = _TCP(buf, off)
            self.flows.tcp(ts, wirelen, src, dst, sport, dport, offflags & 0xFF, seq,
                           wire_end - off - ((offflags >> 12) << 2))
            if (sport == 53 or dport == 53) and off + 20 <= end:
                payload = off + ((offflags >> 12) << 2)
                if payload < off + 20:
                    raise _E_TCP_OFFSET
                if payload < end or offflags & 0x07:
                    messages = self.tcp_dns.segment(src, dst, sport, dport, seq,
                                                    offflags & 0xFF, buf, payload, end)
                    for message in messages:
                        self._dns(parse_message(message, 0, len(message)), ts, src, dst)
        elif proto == 17:
            if off + 8 > end:
                raise _TRUNCATED
            sport, dport, ulen = _UDP(buf, off)
            self.flows.datagram(ts, wirelen, src, dst, sport, dport, 17)
            if (sport == 53 or dport == 53) and off + 8 < end:  # an empty datagram is no DNS
                if ulen < 8:
                    raise _E_UDP_LENGTH
                self._dns(parse_message(buf, off + 8, min(end, off + ulen)), ts, src, dst)
        elif proto in {1, 58}:
            if off + 2 > end:
                raise _TRUNCATED
            if proto == 1 and buf[off] == _ICMP_REDIRECT and off + 28 <= end:
                # a redirect names the new gateway and, in the header it quotes, the
                # destination whose traffic it moves there
                self.maker.icmp(ts, src, dst, buf[off], buf[off + 1], buf[off + 4 : off + 8],
                                buf[off + 24 : off + 28])
            else:
                self.maker.icmp(ts, src, dst, buf[off], buf[off + 1])
            if proto == 58 and buf[off] in _NDP_OPS:
                self._ndp(buf, off, end, ts, src, dst)
        elif proto != _NO_NEXT_HEADER and dst[0] < _MULTICAST[len(dst)]:
            # any other protocol sent to one host (not the LAN's multicast routing and
            # redundancy chatter): a tunnel (GRE, IP in IP, ESP), an SCTP or protocol
            # scan. A flow like UDP's; SCTP, DCCP and UDP-Lite carry ports as UDP does.
            sport = dport = 0
            if proto in _PORTED:
                if off + 4 > end:
                    raise _TRUNCATED
                sport, dport = _PORTS(buf, off)
            self.flows.datagram(ts, wirelen, src, dst, sport, dport, proto)

    def _ndp(self, buf: bytes, off: int, end: int, ts: float, src: bytes, dst: bytes) -> None:
        """Neighbour discovery: who claims to be a router, or to own an address."""
        kind = buf[off]
        op, opts = _NDP_OPS[kind]
        target = redirected = b""
        if kind in {135, 136, 137}:  # solicitations, advertisements, redirects name a target
            if off + 24 > end:
                raise _TRUNCATED
            target = buf[off + 8 : off + 24]
            if kind == 137:  # a redirect: target is the better first hop for this destination
                if off + 40 > end:
                    raise _TRUNCATED
                redirected = buf[off + 24 : off + 40]
        mac = b""
        p = off + opts
        while p + 8 <= end:  # options: type, length in 8-byte units, value
            otype, olen = buf[p], buf[p + 1]
            if olen == 0:
                raise _E_NDP_OPTION
            if otype in {1, 2} and olen == 1:  # source / target link-layer address
                mac = buf[p + 2 : p + 8]
            p += olen * 8
        self.maker.ndp(ts, src, dst, op, target, mac, redirected)

    def _dns(self, questions: list[tuple[str, str, bool, str]], ts: float, src: bytes,
             dst: bytes) -> None:
        for qname, qtype, is_response, rcode in questions:
            self.maker.dns(ts, src, dst, qname, qtype, is_response, rcode)
