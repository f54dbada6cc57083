"""DNS over TCP read across segments, as the receiving host's TCP stack delivers it.

A DNS message over TCP is a two-byte length and the message; nothing stops a
sender from splitting it over many segments (a byte at a time, even), sending
them out of order, or repeating some, and the server's kernel puts the stream
back together. Read one segment at a time, such a query is invisible. So each
direction of a port-53 TCP conversation keeps its stream here: bytes in
sequence order, a retransmitted byte counted once (the first copy wins), a few
segments that arrive early held until the gap before them fills.

Memory is bounded: at most :data:`MAX_STREAMS` streams (the least recently
used is forgotten), :data:`MAX_EARLY` early segments per stream, and never more
than one message's worth of bytes (2 + 65,535) waiting in a stream.
"""

from __future__ import annotations

from collections import OrderedDict

from sentinel.sources.net.dns import Malformed

MAX_STREAMS = 4096
MAX_EARLY = 16
_MAX_BUFFER = 2 + 65535
_SYN, _FIN, _RST = 0x02, 0x01, 0x04

_E_TCP_LENGTH = Malformed("DNS-over-TCP length shorter than a header")

StreamKey = tuple[bytes, bytes, int, int]


class _Stream:
    __slots__ = ("data", "early", "next")

    def __init__(self, next_seq: int) -> None:
        self.next = next_seq
        self.data = bytearray()
        self.early: dict[int, bytes] = {}


class TcpDnsStreams:
    """The streams of port-53 TCP conversations; :meth:`segment` returns whole messages."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self.max_streams = max_streams
        self.streams: OrderedDict[StreamKey, _Stream] = OrderedDict()

    def segment(self, src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int,
                buf: bytes, start: int, end: int) -> list[bytes]:
        """Take one segment's payload ``buf[start:end]``; the DNS messages it completes."""
        key = (src, dst, sport, dport)
        streams = self.streams
        stream = streams.get(key)
        if flags & _SYN:
            stream = _Stream((seq + 1) & 0xFFFFFFFF)
            self._put(key, stream)
            seq = (seq + 1) & 0xFFFFFFFF
        elif stream is None:
            if start >= end:
                return []
            stream = _Stream(seq)  # picked up mid-way: hope it starts at a message
            self._put(key, stream)
        else:
            streams.move_to_end(key)
        out: list[bytes] = []
        try:
            if start < end:
                self._take(stream, seq, bytes(buf[start:end]))
                while stream.early and stream.next in stream.early:
                    self._take(stream, stream.next, stream.early.pop(stream.next))
                self._messages(stream, out)
        except Malformed:
            streams.pop(key, None)
            raise
        if flags & (_FIN | _RST):
            streams.pop(key, None)
        return out

    def _put(self, key: StreamKey, stream: _Stream) -> None:
        self.streams[key] = stream
        self.streams.move_to_end(key)
        if len(self.streams) > self.max_streams:
            self.streams.popitem(last=False)

    @staticmethod
    def _take(stream: _Stream, seq: int, data: bytes) -> None:
        ahead = (seq - stream.next) & 0xFFFFFFFF
        if ahead == 0:
            pass
        elif ahead < 0x80000000:  # a gap before it: hold it until the gap fills
            if len(stream.early) < MAX_EARLY:
                stream.early.setdefault(seq, data)
            return
        else:  # starts before what was taken: keep only what is new
            behind = 0x100000000 - ahead
            if behind >= len(data):
                return
            data = data[behind:]
        stream.data += data
        stream.next = (stream.next + len(data)) & 0xFFFFFFFF

    @staticmethod
    def _messages(stream: _Stream, out: list[bytes]) -> None:
        data = stream.data
        while len(data) >= 2:
            length = data[0] << 8 | data[1]
            if length < 12:
                raise _E_TCP_LENGTH
            if len(data) < 2 + length:
                break
            out.append(bytes(data[2 : 2 + length]))
            del data[: 2 + length]
        if len(data) > _MAX_BUFFER:
            del data[:]
