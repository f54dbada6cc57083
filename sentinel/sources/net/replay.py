"""Capture files through the live decoder and flow logic, driven by packet time."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sentinel.config import Config
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net.decode import DECODE_ERRORS, Decoder, Handler
from sentinel.sources.net.emitter import EventMaker
from sentinel.sources.net.flows import FlowTable
from sentinel.sources.net.pcapfile import CaptureFile

#: The ``iface`` of replayed events and the packet counter's label.
REPLAY_IFACE = "pcap"


@dataclass
class ReplayStats:
    """What a replay read, for its summary."""

    packets: int = 0
    files: int = 0
    truncated: list[str] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)  # file -> link type


def iter_pcap_events(
    paths: Iterable[Path | str],
    config: Config,
    metrics: Metrics,
    *,
    on_tick: Callable[[float], None] | None = None,
    stats: ReplayStats | None = None,
) -> Iterator[Event]:
    """The events of pcap/pcapng files, in order, as live capture would have produced them.

    Flows expire by packet time; open flows are flushed at the end (and before a
    file whose packets start earlier than the previous file's end, which is
    another capture rather than its continuation). ``on_tick(t)`` is called
    each time packet time passes a whole second, after that packet's events.
    Raises :class:`~sentinel.sources.net.pcapfile.CaptureFileError` for a file
    that cannot be read.
    """
    st = stats if stats is not None else ReplayStats()
    pending: list[Event] = []
    maker = EventMaker(config, metrics, pending.append, REPLAY_IFACE)
    net = config.network
    flows = FlowTable(maker, metrics, timeout=net.flow_timeout, interval=net.flow_interval,
                      max_flows=net.max_flows)
    decoder = Decoder(flows, maker, metrics)
    counter = metrics.packets.labels(REPLAY_IFACE)
    latest = 0.0  # packet time at the end of the files read so far
    for path in paths:
        cap = CaptureFile(Path(path))
        st.files += 1
        count = 0
        try:
            data = cast(bytes, cap.data)  # an mmap indexes and slices like bytes
            linktype = -1
            link: Handler = decoder.link(-1)
            next_tick = -math.inf  # the first packet of a file always ticks
            ts = latest
            for ts, off, incl, orig, lt in cap.records():
                if lt != linktype:
                    linktype, link = lt, decoder.link(lt)
                    if not decoder.supports(lt):
                        st.unsupported[str(path)] = lt
                if ts >= next_tick:
                    if next_tick == -math.inf and ts < max(latest, flows.now):
                        # earlier than where the last file ended: another capture
                        flows.flush(max(latest, flows.now))
                        flows.now = latest = 0.0
                    next_tick = math.floor(ts) + 1.0
                    tick = True
                else:
                    tick = False
                try:  # inlined Decoder.handler: this loop runs once per packet
                    link(data, off, off + incl, orig, ts)
                except DECODE_ERRORS:
                    decoder.count_error()
                except Exception as exc:
                    decoder.failed(exc, lt)
                count += 1
                if pending:
                    yield from pending
                    pending.clear()
                if tick and on_tick is not None:
                    on_tick(ts)
            latest = max(latest, ts)
            if cap.truncated:
                st.truncated.append(str(path))
        finally:
            cap.close()
            counter.inc(count)
            st.packets += count
    flows.flush(max(latest, flows.now))
    yield from pending
    pending.clear()
