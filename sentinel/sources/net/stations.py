"""Stations on the segment, learned from ARP and from the frames that open flows.

Every ARP message names its sender's address and MAC; every IP frame that opens a
flow (or is not TCP) names its sender's MAC, which is how a MAC flood shows (a
tool sending frames from thousands of made-up MACs, to overflow the switch's table
so that it sends everyone's traffic to every port). The first
:data:`LEARN` seconds of a capture (packet time) learn the segment's MACs
silently; after that, a MAC never seen before is a ``new`` station. From the
start, an address that goes back to the MAC it had before its last change (A,
then B, then A again) is a ``flip_flop``: two machines answering for one address,
the mark of ARP poisoning in progress or of a duplicate address, which no
learning makes ordinary (from ARP only: an IP frame's sender address may be
anyone's behind a router). A plain change of MAC is left
to the ``change`` rule on ``net.arp`` (arp-address-changed-mac).

Learning ends early when more than :data:`LEARN_BURST` MACs turn up within
:data:`BURST_WINDOW` seconds: no segment a tally server sits on introduces itself
that fast, a flood does, and a flood started with the daemon (or a capture of one)
must not be taken for the segment.

The end of learning is told once (``on_learned``: packet time, ``time`` or
``burst``, the stations learned): the live source logs it
(``station_learning_ended``), so the log says from when, and why, every MAC not
seen before is reported.

Memory is bounded: :data:`MAX_STATIONS` MACs and as many addresses are
remembered; past that the least recently seen is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

#: Seconds of packet time spent learning the segment before anything is new.
LEARN = 300.0
#: More new MACs than this within BURST_WINDOW seconds end the learning: a flood.
LEARN_BURST = 200
BURST_WINDOW = 60.0
MAX_STATIONS = 65536
_UNSET = b"\0\0\0\0"

#: (ts, address, mac, previous mac or b"", change)
Report = Callable[[float, bytes, bytes, bytes, str], None]
#: (ts, why: "time" or "burst", stations learned)
Learned = Callable[[float, str, int], None]


class StationTable:
    """MACs seen, and each address's last two MACs; ``report`` gets new stations and
    flip-flops."""

    def __init__(self, report: Report, learn: float = LEARN,
                 on_learned: Learned | None = None) -> None:
        self.report = report
        self.learn = learn
        self.on_learned = on_learned
        self.start: float | None = None
        self.learning = True
        # the learning time's current window of BURST_WINDOW seconds: start, MACs new in it
        self._window, self._burst = 0.0, 0
        self.macs: OrderedDict[bytes, float] = OrderedDict()
        # address -> (its MAC now, the MAC before its last change)
        self.addrs: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()

    def frame(self, ts: float, mac: bytes, addr: bytes) -> None:
        """``mac`` sent an IP frame from ``addr``: a new station if never seen."""
        macs = self.macs
        if mac in macs:
            macs.move_to_end(mac)
            return
        if self.start is None:
            self.start = self._window = ts
        if len(macs) >= MAX_STATIONS:
            macs.popitem(last=False)
        macs[mac] = ts
        if self.learning:
            why = self._learning_over(ts)
            if why is not None:
                self.learning = False
                if self.on_learned is not None:
                    self.on_learned(ts, why, len(macs) - 1)
        if not self.learning:
            self.report(ts, addr, mac, b"", "new")

    def _learning_over(self, ts: float) -> str | None:
        """One more MAC turned up at ``ts``: None while this is still the learning time,
        else why it is over (``time``, or a ``burst`` of new MACs)."""
        assert self.start is not None
        if ts - self.start >= self.learn:
            return "time"
        if ts - self._window >= BURST_WINDOW:
            self._window, self._burst = ts, 0
        self._burst += 1
        return None if self._burst <= LEARN_BURST else "burst"

    def arp(self, ts: float, mac: bytes, addr: bytes) -> None:
        """``mac`` sent ARP claiming ``addr``: a new station, and a flip-flop of ``addr``."""
        self.frame(ts, mac, addr)
        if addr == _UNSET:  # an ARP probe: no address claimed yet
            return
        seen = self.addrs.get(addr)
        if seen is None:
            if len(self.addrs) >= MAX_STATIONS:
                self.addrs.popitem(last=False)
            self.addrs[addr] = (mac, b"")
            return
        self.addrs.move_to_end(addr)
        now, before = seen
        if mac == now:
            return
        self.addrs[addr] = (mac, now)
        if mac == before:  # from the start: no segment needs learning to do this
            self.report(ts, addr, mac, now, "flip_flop")


def learning_ended_detail(why: str) -> str:
    """The log line's explanation of ``on_learned``'s ``why``."""
    if why == "burst":
        first = (f"more than {LEARN_BURST} new MACs within {BURST_WINDOW:g} s: a flood,"
                 " not the segment introducing itself")
    else:
        first = f"{LEARN:g} s of packets learned"
    return f"{first}; every MAC not seen before is a new station from now on"
