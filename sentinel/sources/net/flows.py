"""The flow table: TCP and UDP conversations, their byte counts and their ends.

A flow is keyed by its two endpoints in a canonical order, so both directions
find the same record. ``src`` is whoever started it: the sender of the SYN, the
receiver of a SYN-ACK, the sender of the first UDP packet; for TCP picked up
mid-stream, the side with the higher port (the ephemeral one).

The table is an ordered dict kept in order of last activity, so idle flows are
always at its front: expiry pops from the front only, and the cap evicts the
least recently active flow. A TCP flow ends at a RST or once both sides have
sent FIN; it then stays in the table, silent, until idle, so that the last ACKs
and retransmissions do not start a phantom flow. A new SYN on an ended flow
(port reuse) starts a fresh one, but not a retransmission of the flow's own SYN
(same sender, same sequence number): a connect scan that re-sends its SYN after
a RST is still one connection attempt.

How a TCP flow is announced (``net.connection``, once per flow):

* a SYN: an ordinary opening (``probe`` and ``midstream`` false);
* a first segment with neither SYN nor RST nor data, from the side that looks
  like the client: a stealth-scan probe (FIN, NULL, Xmas, ACK, Maimon, window
  scans), ``probe`` true, ``tcp_flags`` the probe's flags;
* a SYN-ACK or data on a flow whose SYN was not seen (the capture started
  mid-way): ``midstream`` true, so the connection is not lost.

``net.established`` follows once the connection is known to be up: a SYN-ACK
from the side that received the SYN, or data on a flow picked up mid-way.
Every ``net.flow`` report says whether that happened (``established``).

A UDP datagram opens a flow and is announced, except the answer to a TFTP request:
TFTP answers from a port of its own, so a datagram from the host a request went to
(69/udp), to the port it came from, within :data:`TFTP_EXPECT` seconds, is that
request's exchange (its flow's ``src`` the requester), not a new one announced as
sent to the requester. The request itself is announced as any datagram is.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from sentinel.metrics import Metrics
from sentinel.sources.net.emitter import EventMaker

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
#: tcp_flags text for every flag byte: letters of "FSRPAUEC" in that order.
FLAG_TEXT: list[str] = ["".join(c for i, c in enumerate("FSRPAUEC") if b >> i & 1)
                        for b in range(256)]

_SYN_SEEN, _SYNACK_SEEN, _FIN_SRC, _FIN_DST, _ENDED = 1, 2, 4, 8, 16
# _ANNOUNCED: net.connection sent; _ESTABLISHED: net.established sent; _PROBE: announced
# as a probe; _SETTLED: nothing left to announce, so the fast path may take its segments
_ANNOUNCED, _ESTABLISHED, _PROBE, _SETTLED = 32, 64, 128, 256

FlowKey = tuple[bytes, bytes, int, int, int]
_PORTS = struct.Struct("!HH").pack
#: TFTP's port, the seconds an answer to a request is expected, and at most how many
#: requests are remembered (the oldest forgotten first).
TFTP_PORT, TFTP_EXPECT, TFTP_MAX_EXPECTED = 69, 30.0, 1024
#: The ``proto`` text of an IP protocol number (IANA keywords, lower case); any
#: other number is ``ip-N``.
PROTO_NAMES = {1: "icmp", 4: "ipip", 6: "tcp", 17: "udp", 33: "dccp", 41: "ipv6-in-ip",
               47: "gre", 50: "esp", 51: "ah", 58: "icmpv6", 132: "sctp", 136: "udplite"}


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(proto) or f"ip-{proto}"


class Flow:
    """One conversation. ``a`` is the canonical first endpoint of the key."""

    __slots__ = ("bytes_in", "bytes_out", "dport", "dst", "first", "iface", "isn", "last",
                 "packets", "proto", "reported", "reported_in", "reported_out", "sport", "src",
                 "src_is_a", "state")

    def __init__(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int,
                 src_is_a: bool, ts: float, iface: str) -> None:
        self.proto = proto
        self.src = src
        self.sport = sport
        self.dst = dst
        self.dport = dport
        self.src_is_a = src_is_a
        self.first = ts
        self.last = ts
        self.reported = ts
        self.bytes_out = 0
        self.bytes_in = 0
        # the totals at the last report: each report also carries what is new since
        self.reported_out = 0
        self.reported_in = 0
        self.packets = 0
        self.state = 0
        self.iface = iface
        self.isn = -1  # the sequence number of src's SYN, to know its retransmissions


class FlowTable:
    """Tracks flows and emits ``net.connection``, ``net.tcp_synack``, ``net.established``
    and ``net.flow``."""

    def __init__(self, maker: EventMaker, metrics: Metrics, *, timeout: float, interval: float,
                 max_flows: int) -> None:
        self.maker = maker
        self.timeout = timeout
        self.interval = interval
        self.max_flows = max_flows
        self.flows: OrderedDict[FlowKey, Flow] = OrderedDict()
        # every TCP flow of the table by each side's wire key (sender address, receiver
        # address, sender port, receiver port: the bytes as an IP and TCP header hold them)
        # -> (flow, its key, the sender is its src): see tcp_known
        self._tcp_wire: dict[bytes, tuple[Flow, FlowKey, bool]] = {}
        self.now = 0.0
        self._next_expiry = float("inf")
        self._metrics = metrics
        self._evicted = {r: metrics.flows_evicted.labels(r) for r in ("idle", "end", "capacity")}
        # TFTP requests awaiting an answer: (requester, its port, server) -> when sent
        self._tftp: OrderedDict[tuple[bytes, int, bytes], float] = OrderedDict()

    # -- per packet ----------------------------------------------------------

    def _lookup(self, proto: int, src: bytes, dst: bytes, sport: int, dport: int,
                ts: float) -> tuple[Flow | None, FlowKey, bool]:
        if ts > self.now:
            self.now = ts
            if ts >= self._next_expiry:
                self.expire(ts)
        if src < dst or (src == dst and sport <= dport):
            key = (src, dst, sport, dport, proto)
            from_a = True
        else:
            key = (dst, src, dport, sport, proto)
            from_a = False
        flow = self.flows.get(key)
        if flow is not None:
            self.flows.move_to_end(key)
        return flow, key, from_a

    def _add(self, key: FlowKey, flow: Flow) -> None:
        flows = self.flows
        if len(flows) >= self.max_flows:
            old_key, old = flows.popitem(last=False)
            self._forget(old_key)
            self._report(old, self.now, final=True)
            self._evicted["capacity"].inc()
        if not flows:
            self._next_expiry = flow.last + self.timeout
        flows[key] = flow
        a, b, pa, pb, proto = key
        if proto == 6:  # a's key last: a flow with itself has one key, and it is a's
            self._tcp_wire[b + a + _PORTS(pb, pa)] = (flow, key, not flow.src_is_a)
            self._tcp_wire[a + b + _PORTS(pa, pb)] = (flow, key, flow.src_is_a)

    def _forget(self, key: FlowKey) -> None:
        """Drop the wire keys of a flow that has left the table."""
        a, b, pa, pb, proto = key
        if proto == 6:
            self._tcp_wire.pop(a + b + _PORTS(pa, pb), None)
            self._tcp_wire.pop(b + a + _PORTS(pb, pa), None)

    def tcp_known(self, ts: float, wirelen: int, wire: bytes, flags: int) -> bool:
        """Account a segment of a flow in the table that carries no SYN, FIN or RST.

        ``wire`` is the segment's sender and receiver address and port bytes as its
        IP and TCP headers hold them. False, with nothing done, when :meth:`tcp`
        must take the segment: a flow not in the table, a control flag, or flows
        due to expire first. Most segments of a capture are this case, and it
        needs neither the addresses apart nor the flow's key built.
        """
        hit = self._tcp_wire.get(wire)
        if hit is None or flags & 0x07 or not hit[0].state & _SETTLED:
            return False
        if ts > self.now:
            if ts >= self._next_expiry:
                return False
            self.now = ts
        flow, key, from_src = hit
        self.flows.move_to_end(key)
        flow.last = ts
        flow.packets += 1
        if from_src:
            flow.bytes_out += wirelen
        else:
            flow.bytes_in += wirelen
        if ts - flow.reported >= self.interval and not flow.state & _ENDED:
            self._report(flow, ts, final=False)
        return True

    def tcp(self, ts: float, wirelen: int, src: bytes, dst: bytes, sport: int, dport: int,
            flags: int, seq: int = -1, payload: int = 0) -> None:
        """Account one TCP segment (``seq`` its sequence number, ``payload`` its data bytes)."""
        # _lookup, inlined: this runs for every TCP segment
        if ts > self.now:
            self.now = ts
            if ts >= self._next_expiry:
                self.expire(ts)
        if src < dst or (src == dst and sport <= dport):
            key = (src, dst, sport, dport, 6)
            from_a = True
        else:
            key = (dst, src, dport, sport, 6)
            from_a = False
        flows = self.flows
        flow = flows.get(key)
        if flow is None or flags & 0x02:  # new, or a SYN (which may start a new one)
            flow = self._tcp_open(flow, key, from_a, src, dst, sport, dport, flags, seq,
                                  payload, ts)
        else:
            flows.move_to_end(key)
        flow.last = ts
        flow.packets += 1
        from_src = from_a == flow.src_is_a
        if from_src:
            flow.bytes_out += wirelen
        else:
            flow.bytes_in += wirelen
        if flags & 0x07:  # SYN, FIN or RST
            self._tcp_control(flow, flags, from_src, ts)
        if payload > 0 and not flow.state & _SETTLED:
            self._midstream(flow, flags, ts)
        if ts - flow.reported >= self.interval and not flow.state & _ENDED:
            self._report(flow, ts, final=False)

    def _tcp_open(self, flow: Flow | None, key: FlowKey, from_a: bool, src: bytes, dst: bytes,
                  sport: int, dport: int, flags: int, seq: int, payload: int,
                  ts: float) -> Flow:
        """The flow a segment belongs to when it is new or carries SYN."""
        syn_only = flags & (SYN | ACK) == SYN
        if flow is not None and syn_only:
            if (flow.state & _ENDED and seq == flow.isn and seq >= 0
                    and from_a == flow.src_is_a):
                # the same SYN again after a RST: a retransmission, not a new connection
                self.flows.move_to_end(key)
                return flow
            if flow.state & _ENDED or (not flow.state & _SYN_SEEN
                                       and from_a != flow.src_is_a):
                # port reuse, or a flow picked up mid-stream whose sides were guessed wrong
                del self.flows[key]
                self._forget(key)
                if not flow.state & _ENDED:
                    self._report(flow, ts, final=True)
                self._evicted["end"].inc()
                flow = None
        if flow is not None:
            self.flows.move_to_end(key)
            return flow
        # who started it: a SYN's sender; a SYN-ACK's receiver; a segment without ACK
        # (FIN, NULL, Xmas probes: never part of a connection) its sender; otherwise
        # the side on the higher port, the ephemeral one
        if syn_only or (not flags & (SYN | ACK | RST)) or (
                flags & (SYN | ACK) != SYN | ACK and sport > dport):
            flow = Flow(6, src, sport, dst, dport, from_a, ts, self.maker.iface)
            if syn_only:
                flow.isn = seq
            elif not flags & (RST | SYN) and payload <= 0:
                # a bare segment that opens nothing from the client's side: a probe
                flow.state = _ANNOUNCED | _PROBE
                self.maker.connection(ts, "tcp", src, sport, dst, dport, FLAG_TEXT[flags],
                                      flow.iface, probe=True)
        else:  # a SYN-ACK, or mid-stream with the sender on the lower port
            flow = Flow(6, dst, dport, src, sport, not from_a, ts, self.maker.iface)
        self._add(key, flow)
        return flow

    def _midstream(self, flow: Flow, flags: int, ts: float) -> None:
        """Data on a flow not yet known to be up: announce what was missed."""
        state = flow.state
        if not state & _ANNOUNCED or state & _PROBE:
            # (a "probe" that carries data after all was a connection picked up at an ACK)
            self.maker.connection(ts, "tcp", flow.src, flow.sport, flow.dst, flow.dport,
                                  FLAG_TEXT[flags], flow.iface, midstream=True)
        if not state & _ESTABLISHED:
            self.maker.established(ts, flow.src, flow.sport, flow.dst, flow.dport,
                                   FLAG_TEXT[flags], flow.iface, midstream=not state & _SYN_SEEN)
        flow.state = (state | _ANNOUNCED | _ESTABLISHED | _SETTLED) & ~_PROBE

    def _tcp_control(self, flow: Flow, flags: int, from_src: bool, ts: float) -> None:
        state = flow.state
        if flags & (SYN | ACK) == SYN:
            if not state & _SYN_SEEN:
                flow.state = state | _SYN_SEEN | _ANNOUNCED | _SETTLED
                if not state & _ANNOUNCED or state & _PROBE:  # a SYN after a probe counts
                    self.maker.connection(ts, "tcp", flow.src, flow.sport, flow.dst,
                                          flow.dport, FLAG_TEXT[flags], flow.iface)
        elif flags & SYN and not state & _SYNACK_SEEN and not from_src:
            if not state & _ANNOUNCED:  # the SYN was not seen
                self.maker.connection(ts, "tcp", flow.src, flow.sport, flow.dst, flow.dport,
                                      FLAG_TEXT[flags], flow.iface, midstream=True)
            self.maker.synack(ts, flow.dst, flow.dport, flow.src, flow.sport,
                              FLAG_TEXT[flags], flow.iface)
            if not state & _ESTABLISHED:
                self.maker.established(ts, flow.src, flow.sport, flow.dst, flow.dport,
                                       FLAG_TEXT[flags], flow.iface,
                                       midstream=not state & _SYN_SEEN)
            flow.state = state | _SYNACK_SEEN | _ANNOUNCED | _ESTABLISHED | _SETTLED
        if state & _ENDED:
            return
        if flags & RST:
            flow.state |= _ENDED
        elif flags & FIN:
            flow.state |= _FIN_SRC if from_src else _FIN_DST
            if flow.state & (_FIN_SRC | _FIN_DST) == _FIN_SRC | _FIN_DST:
                flow.state |= _ENDED
        if flow.state & _ENDED:
            self._report(flow, ts, final=True)

    def datagram(self, ts: float, wirelen: int, src: bytes, dst: bytes, sport: int,
                 dport: int, proto: int) -> None:
        """Account one packet of a protocol without TCP's handshake: a UDP datagram, or
        SCTP, GRE, ESP... (``proto``; ports 0 where the protocol has none)."""
        flow, key, from_a = self._lookup(proto, src, dst, sport, dport, ts)
        if flow is None:
            if proto == 17 and self._tftp and self._tftp_answer(src, dst, dport, ts):
                # the answer to dst's TFTP request: dst's exchange, announced with it
                flow = Flow(proto, dst, dport, src, sport, not from_a, ts, self.maker.iface)
                self._add(key, flow)
            else:
                flow = Flow(proto, src, sport, dst, dport, from_a, ts, self.maker.iface)
                self._add(key, flow)
                self.maker.connection(ts, proto_name(proto), src, sport, dst, dport, "",
                                      flow.iface)
                if proto == 17 and dport == TFTP_PORT:
                    self._expect_tftp(src, sport, dst, ts)
            flow.state = _ANNOUNCED
        flow.last = ts
        flow.packets += 1
        if from_a == flow.src_is_a:
            flow.bytes_out += wirelen
        else:
            flow.bytes_in += wirelen
        if ts - flow.reported >= self.interval:
            self._report(flow, ts, final=False)

    def _expect_tftp(self, requester: bytes, port: int, server: bytes, ts: float) -> None:
        expected = self._tftp
        key = (requester, port, server)
        expected.pop(key, None)
        if len(expected) >= TFTP_MAX_EXPECTED:
            expected.popitem(last=False)
        expected[key] = ts

    def _tftp_answer(self, src: bytes, dst: bytes, dport: int, ts: float) -> bool:
        """Is a datagram from ``src`` to ``dst``:``dport`` the answer to dst's TFTP request?"""
        sent = self._tftp.get((dst, dport, src))
        return sent is not None and 0.0 <= ts - sent <= TFTP_EXPECT

    # -- reports and expiry --------------------------------------------------

    def _report(self, flow: Flow, ts: float, *, final: bool) -> None:
        flow.reported = ts
        delta_out, delta_in = flow.bytes_out - flow.reported_out, flow.bytes_in - flow.reported_in
        flow.reported_out, flow.reported_in = flow.bytes_out, flow.bytes_in
        if flow.proto == 6:
            proto, established = "tcp", bool(flow.state & _ESTABLISHED)
        else:  # a UDP (or other) flow is answered once the other side sent anything
            proto, established = proto_name(flow.proto), flow.bytes_in > 0
        self.maker.flow(ts, proto, flow.src, flow.sport, flow.dst, flow.dport, flow.bytes_out,
                        flow.bytes_in, delta_out, delta_in, flow.packets,
                        flow.last - flow.first, final, flow.iface, established)

    def expire(self, now: float) -> None:
        """End every flow idle for ``timeout`` by ``now``; its report is timed at its expiry."""
        flows = self.flows
        timeout = self.timeout
        while flows:
            key, flow = next(iter(flows.items()))
            due = flow.last + timeout
            if due > now:
                self._next_expiry = due
                break
            del flows[key]
            self._forget(key)
            if flow.state & _ENDED:
                self._evicted["end"].inc()
            else:
                self._report(flow, due, final=True)
                self._evicted["idle"].inc()
        else:
            self._next_expiry = float("inf")
        self._metrics.flows_active.set(len(flows))
        self.maker.scans.expire(now)

    def flush(self, now: float) -> None:
        """End every open flow (end of a capture file), reporting at ``now``; sum up scans."""
        for flow in self.flows.values():
            if not flow.state & _ENDED:
                self._report(flow, now, final=True)
        self.maker.scans.flush(now)
        self.flows.clear()
        self._tcp_wire.clear()
        self._tftp.clear()
        self._next_expiry = float("inf")
        self._metrics.flows_active.set(0)
