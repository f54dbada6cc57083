"""What one source did, summed up when it goes quiet: the real size of a scan.

The scan rules are thresholds: they fire when a source crosses 15 ports or 25
hosts, and cannot know then how far the scan will go. This tracker follows
every source that opens connections (SYNs, probes, first UDP datagrams) and,
once a source has been quiet for :data:`IDLE` seconds (or the capture ends),
emits one ``net.scan`` event with what it did in total: distinct ports and
hosts, connections, probes among them, and how many the other side accepted.
Only sources past :data:`MIN_PORTS` ports or :data:`MIN_HOSTS` hosts are
reported; the rest are forgotten.

Memory is bounded: at most :data:`MAX_SOURCES` sources (the least recently
active is summed up early), ports as a 8 KiB bitmap per source, and at most
:data:`MAX_HOSTS` distinct hosts remembered per source (beyond that the count
is a lower bound, and the event says so with ``hosts_capped``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

#: Seconds of silence after which a source's activity is summed up.
IDLE = 60.0
MIN_PORTS = 15
MIN_HOSTS = 25
MAX_SOURCES = 4096
MAX_HOSTS = 4096

#: (ts, src, dst, ports, hosts, hosts_capped, connections, probes, answered, duration)
Report = Callable[[float, bytes, bytes | None, int, int, bool, int, int, int, float], None]


class _Activity:
    __slots__ = ("answered", "bitmap", "connections", "first", "hosts", "last", "ports",
                 "probes")

    def __init__(self, ts: float) -> None:
        self.first = ts
        self.last = ts
        self.bitmap = bytearray(8192)
        self.ports = 0
        self.hosts: set[bytes] = set()
        self.connections = 0
        self.probes = 0
        self.answered = 0


class ScanTracker:
    """Counts per source; ``report`` is called with the totals of each scan that ends."""

    def __init__(self, report: Report, idle: float = IDLE) -> None:
        self.report = report
        self.idle = idle
        self.sources: OrderedDict[bytes, _Activity] = OrderedDict()  # least recent first
        self._next_check = 0.0

    def connection(self, ts: float, src: bytes, dst: bytes, dport: int, probe: bool) -> None:
        """One connection (or probe) opened by ``src``."""
        if ts >= self._next_check:
            self.expire(ts)
        act = self.sources.get(src)
        if act is None:
            if len(self.sources) >= MAX_SOURCES:
                old_src, old = self.sources.popitem(last=False)
                self._end(old_src, old)
            act = self.sources[src] = _Activity(ts)
        else:
            self.sources.move_to_end(src)
        act.last = ts
        act.connections += 1
        if probe:
            act.probes += 1
        byte, bit = dport >> 3, 1 << (dport & 7)
        if not act.bitmap[byte] & bit:
            act.bitmap[byte] |= bit
            act.ports += 1
        if len(act.hosts) < MAX_HOSTS:
            act.hosts.add(dst)

    def answered(self, src: bytes) -> None:
        """A connection ``src`` opened was accepted."""
        act = self.sources.get(src)
        if act is not None:
            act.answered += 1

    def expire(self, now: float) -> None:
        """Sum up every source quiet for ``idle`` seconds by ``now``."""
        self._next_check = now + 1.0
        sources = self.sources
        while sources:
            src, act = next(iter(sources.items()))
            if act.last + self.idle > now:
                break
            del sources[src]
            self._end(src, act, at=act.last + self.idle)

    def flush(self, now: float) -> None:
        """The capture ended: sum up every source now."""
        for src, act in self.sources.items():
            self._end(src, act, at=now)
        self.sources.clear()

    def _end(self, src: bytes, act: _Activity, at: float | None = None) -> None:
        hosts = len(act.hosts)
        if act.ports < MIN_PORTS and hosts < MIN_HOSTS:
            return
        only = next(iter(act.hosts)) if hosts == 1 else None
        self.report(act.last if at is None else at, src, only, act.ports, hosts,
                    hosts >= MAX_HOSTS, act.connections, act.probes, act.answered,
                    act.last - act.first)
