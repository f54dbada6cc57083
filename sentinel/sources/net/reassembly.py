"""IP fragment reassembly (IPv4 and IPv6) under Linux's rules, with bounded memory.

An attacker who splits a SYN into 8-byte fragments, or a DNS query into two,
gets it past a monitor that reads only whole packets, while the tally server's
kernel puts it back together and answers. So sentinel reassembles as the
kernel does and decodes only what the kernel would deliver:

* fragments are keyed by (source, destination, identification, protocol);
* a fragment that lies wholly inside what is already held is a duplicate and
  is ignored, the first copy wins (``IPFRAG_DUP``);
* any other overlap discards the whole datagram (RFC 5722, and IPv4 too since
  Linux 4.19: ``IPFRAG_OVERLAP``), and is reported: overlapping fragments are
  the classic way to show a monitor one payload and the host another;
* a last fragment that disagrees with the length already known, a fragment
  past the end, or an empty one discards the datagram;
* a datagram not complete within :data:`TIMEOUT` seconds (``ipfrag_time``) is
  dropped, and so is the oldest one when :data:`MAX_BYTES` are held
  (``ipfrag_high_thresh``) or :data:`MAX_DATAGRAMS` are in progress.

A first fragment too short to hold its transport header (TCP's 20 bytes, UDP's
and ICMP's 8) is reported as ``tiny``: no sender needs one, and it hides the
ports and flags from filters that look at single packets. For IPv4 Linux still
reassembles it, and so does sentinel; an IPv6 first fragment must carry every
header up to the transport header (RFC 8200; Linux since 5.10 drops it with an
ICMPv6 parameter problem), so there the fragment is dropped, as the kernel
does, and its datagram never completes.

Every outcome is counted in ``sentinel_ip_fragments_total`` and
``sentinel_ip_reassembly_total{result}``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from sentinel.metrics import Metrics

#: Seconds a datagram may take to arrive whole (Linux's net.ipv4.ipfrag_time).
TIMEOUT = 30.0
#: Bytes held in fragments at most (Linux's net.ipv4.ipfrag_high_thresh).
MAX_BYTES = 4 * 1024 * 1024
#: Datagrams in progress at most.
MAX_DATAGRAMS = 4096
#: The largest datagram: 65,535 bytes of IP packet.
MAX_DATAGRAM = 65535

#: Bytes of transport header a first fragment must hold not to be "tiny".
_MIN_HEADER = {6: 20, 17: 8, 1: 8, 58: 8}
_V6_EXT = frozenset((0, 43, 60, 135, 139, 140, 253, 254))


def v6_chain_truncated(nh: int, data: bytes) -> bool:
    """Whether an IPv6 first fragment's headers, from ``nh`` at the start of ``data``,
    stop before the whole transport header (Linux's ``ipv6frag_thdr_truncated``)."""
    p = 0
    while nh in _V6_EXT or nh == 51:
        if p + 8 > len(data):
            return True
        step = (data[p + 1] + 2) * 4 if nh == 51 else (data[p + 1] + 1) * 8
        nh, p = data[p], p + step
    return p + _MIN_HEADER.get(nh, 1) > len(data)

FragKey = tuple[bytes, bytes, int, int]
RESULTS = ("reassembled", "overlap", "duplicate", "bad_length", "timeout", "capacity",
           "truncated_chain")


class AnomalySink(Protocol):
    def fragment(self, ts: float, src: bytes, dst: bytes, proto: int, anomaly: str,
                 version: int) -> None: ...


class _Datagram:
    __slots__ = ("first", "held", "length", "parts", "proto", "runs", "tiny", "wirelen")

    def __init__(self, ts: float, proto: int) -> None:
        self.first = ts
        self.proto = proto
        self.parts: list[tuple[int, bytes]] = []  # (offset, data), in arrival order
        self.runs: list[list[int]] = []  # covered [start, end) ranges, merged, sorted
        self.length = -1  # known once the last fragment arrived
        self.held = 0
        self.wirelen = 0
        self.tiny = False


class Reassembler:
    """Holds fragments until their datagram is whole; see the module docstring."""

    def __init__(self, sink: AnomalySink, metrics: Metrics, *, timeout: float = TIMEOUT,
                 max_bytes: int = MAX_BYTES, max_datagrams: int = MAX_DATAGRAMS) -> None:
        self.sink = sink
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.pending: OrderedDict[FragKey, _Datagram] = OrderedDict()  # oldest first
        self.held = 0
        self._fragments = metrics.ip_fragments
        self._results = {r: metrics.ip_reassembly.labels(r) for r in RESULTS}

    def add(self, ts: float, version: int, src: bytes, dst: bytes, ident: int, proto: int,
            offset: int, more: bool, data: bytes, wirelen: int,
            v6_truncated: bool = False) -> tuple[bytes, int] | None:
        """Take one fragment; the whole payload and the frames' total wire length once
        the datagram is complete, else None. ``v6_truncated``: an IPv6 first fragment
        whose header chain stops short of its transport header (reported, dropped)."""
        self._fragments.inc()
        self.expire(ts)
        if v6_truncated:
            self.sink.fragment(ts, src, dst, proto, "tiny", version)
            self._results["truncated_chain"].inc()
            return None
        key = (src, dst, ident, proto | version << 8)
        dgram = self.pending.get(key)
        if dgram is None:
            if len(self.pending) >= self.max_datagrams:
                self._drop_oldest()
            dgram = self.pending[key] = _Datagram(ts, proto)
        end = offset + len(data)
        if more:
            end &= ~7  # a middle fragment's length counts in whole 8-byte units
            data = data[: end - offset]
        if not more:
            if end < max((r[1] for r in dgram.runs), default=0) or (
                    dgram.length >= 0 and end != dgram.length):
                return self._discard(key, "bad_length")
            dgram.length = end
        elif (dgram.length >= 0 and end > dgram.length) or end > MAX_DATAGRAM:
            return self._discard(key, "bad_length")
        if end <= offset:
            return self._discard(key, "bad_length")
        verdict = _place(dgram.runs, offset, end)
        if verdict == "overlap":
            self.sink.fragment(ts, src, dst, proto, "overlap", version)
            return self._discard(key, "overlap")
        if verdict == "duplicate":
            self._results["duplicate"].inc()
            dgram.wirelen += wirelen
            return None
        if (version == 4 and offset == 0 and more and len(data) < _MIN_HEADER.get(proto, 0)
                and not dgram.tiny):
            dgram.tiny = True
            self.sink.fragment(ts, src, dst, proto, "tiny", version)
        dgram.parts.append((offset, data))
        dgram.held += len(data)
        dgram.wirelen += wirelen
        self.held += len(data)
        while self.held > self.max_bytes and self.pending:
            self._drop_oldest()
        if key not in self.pending:
            return None
        if dgram.length < 0 or dgram.runs != [[0, dgram.length]]:
            return None
        del self.pending[key]
        self.held -= dgram.held
        self._results["reassembled"].inc()
        whole = bytearray(dgram.length)
        for off, part in dgram.parts:
            whole[off : off + len(part)] = part
        return bytes(whole), dgram.wirelen

    def expire(self, now: float) -> None:
        """Drop datagrams older than the timeout."""
        pending = self.pending
        while pending:
            key, dgram = next(iter(pending.items()))
            if dgram.first + self.timeout > now:
                break
            del pending[key]
            self.held -= dgram.held
            self._results["timeout"].inc()

    def clear(self) -> None:
        """Forget everything held (the end of a capture file)."""
        self.pending.clear()
        self.held = 0

    def _drop_oldest(self) -> None:
        _, dgram = self.pending.popitem(last=False)
        self.held -= dgram.held
        self._results["capacity"].inc()

    def _discard(self, key: FragKey, result: str) -> tuple[bytes, int] | None:
        """Drop a datagram that can never be delivered; None, for :meth:`add` to return."""
        dgram = self.pending.pop(key)
        self.held -= dgram.held
        self._results[result].inc()
        return None


def _place(runs: list[list[int]], start: int, end: int) -> str:
    """Add [start, end) to the merged ``runs``: ``new``, ``duplicate`` or ``overlap``."""
    i = 0
    for i, (lo, hi) in enumerate(runs):  # noqa: B007 (i is the insertion point after)
        if end <= lo:
            break
        if start >= hi:
            continue
        if start >= lo and end <= hi:
            return "duplicate"
        return "overlap"
    else:
        i = len(runs)
    runs.insert(i, [start, end])
    # merge with the neighbours it touches
    if i + 1 < len(runs) and runs[i + 1][0] == end:
        runs[i][1] = runs[i + 1][1]
        del runs[i + 1]
    if i > 0 and runs[i - 1][1] == start:
        runs[i - 1][1] = runs[i][1]
        del runs[i]
    return "new"
