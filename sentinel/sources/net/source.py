"""The live network source: one named capture thread per configured interface.

Each thread owns its decoder and flow table. A capture that fails (interface
missing or gone down, socket error) is counted in
``sentinel_capture_errors_total{iface}`` and reopened with exponential backoff
(an absent interface: every ``retry_initial``, to catch it as soon as it is
created), while the other interfaces go on; the flow table survives the reopen.
While any configured capture is not open the source is not alive (the
``network`` component is down, ``sentinel_capture_up{iface}`` is 0): one log
line when a capture goes down, one when it recovers.

With ``attribution.connections`` on, the connection events this host opened or
answered go through :class:`~sentinel.sources.net.owner.ConnectionOwners`
(a worker of its own, component ``connections-owner``) to be given their process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import threading
import time
from collections.abc import Callable

from sentinel import logs
from sentinel.config import Config
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net.capture import NetworkHandler, RingCapture
from sentinel.sources.net.decode import Decoder
from sentinel.sources.net.emitter import Endpoints, EventMaker
from sentinel.sources.net.flows import FlowTable
from sentinel.sources.net.owner import COMPONENT as OWNER_COMPONENT
from sentinel.sources.net.owner import ConnectionOwners
from sentinel.sources.net.stations import learning_ended_detail

log = logs.get("net.capture")

#: How often drop counts are read and idle flows expired while packets flow.
HOUSEKEEPING = 1.0
#: A capture that stayed up this long resets the retry backoff.
STABLE_AFTER = 30.0
#: start() waits at most this long for every interface's first open attempt.
FIRST_OPEN_WAIT = 5.0


class NetworkSource:
    """Captures on every configured interface until stopped (a ``pipeline.Source``)."""

    name = "network"

    def __init__(self, config: Config, metrics: Metrics, *, retry_initial: float = 1.0,
                 retry_max: float = 60.0) -> None:
        self.config = config
        self.metrics = metrics
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # per interface: is its capture open and reading? (False until the first open)
        self._up: dict[str, bool] = {}
        #: the host's own addresses for every capture thread's events: a reload that
        #: learned new ones updates them in place (:meth:`own_addresses`)
        self.ends = Endpoints(config)
        #: the process lookup of local connections (attribution.connections), or None
        self.owners = (ConnectionOwners(metrics) if config.attribution.connections
                       else None)

    def start(self, emit: Callable[[Event], None]) -> None:
        """Start one thread per interface; ``emit`` may block (back-pressure)."""
        self._stop.clear()
        if self.owners is not None:
            self.owners.start()
            emit = self.owners.wrap(emit)
        tried = []
        for iface in self.config.network.interfaces:
            self._up[iface] = False
            self.metrics.capture_up.labels(iface).set(0)
            first = threading.Event()
            t = threading.Thread(target=self._capture, args=(iface, emit, first),
                                 name=f"capture-{iface}", daemon=True)
            t.start()
            self._threads.append(t)
            tried.append(first)
        # READY must mean "capturing": wait until each interface has opened its
        # socket (or failed its first attempt, which is logged and retried)
        deadline = time.monotonic() + FIRST_OPEN_WAIT
        for first in tried:
            first.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every capture; open flows are reported (final) before this returns."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10.0)
        self._threads = []
        if self.owners is not None:  # after the captures: it emits what still waits
            self.owners.stop()

    def own_addresses(self, config: Config) -> None:
        """Take ``config``'s ``host.addresses`` as the host's own from the next packet on.

        A reload that changed only the addresses learned from the kernel (an address
        autoconfigured after start) comes here instead of building a new source: the
        captures stay open, their flows and stations stay, and no packet goes unseen
        while a new capture would start."""
        self.config = config
        self.ends.set_host(config.host.addresses)

    def alive(self) -> bool:
        """True while every configured interface is captured: each thread runs and has its
        capture open. A capture that failed (absent interface, socket error) makes the
        source down until its retry succeeds: never healthy while blind."""
        return (bool(self._threads) and all(t.is_alive() for t in self._threads)
                and all(self._up.values()))

    def components(self) -> dict[str, bool]:
        """Each interface's capture, named ``network:IFACE``, and the process lookup of
        connections (``connections-owner``) when on, for /healthz."""
        out = {f"network:{iface}": up for iface, up in self._up.items()}
        if self.owners is not None:
            out[OWNER_COMPONENT] = self.owners.alive()
        return out

    def _set_up(self, iface: str, up: bool) -> None:
        """Record a capture's state for alive(), /healthz and sentinel_capture_up."""
        self._up[iface] = up
        self.metrics.capture_up.labels(iface).set(1 if up else 0)

    def _capture(self, iface: str, emit: Callable[[Event], None],
                 first: threading.Event | None = None) -> None:
        net = self.config.network
        m = self.metrics
        maker = EventMaker(self.config, m, emit, iface, self.ends)
        maker.stations.on_learned = functools.partial(self._learned, maker)
        flows = FlowTable(maker, m, timeout=net.flow_timeout, interval=net.flow_interval,
                          max_flows=net.max_flows)
        handle = Decoder(flows, maker, m).network_handler()
        errors = m.capture_errors.labels(iface)
        delay = self.retry_initial
        failed_before = False
        while not self._stop.is_set():
            opened = time.monotonic()
            stage = "open"
            absent = False
            try:
                cap = RingCapture(iface, net.snaplen, net.buffer_size)
                try:
                    log.info("capture_started", iface=iface, ring_blocks=cap.block_nr)
                    self._set_up(iface, True)
                    if failed_before:
                        log.warning("capture_recovered", iface=iface)
                        failed_before = False
                    if first is not None:
                        first.set()
                    stage = "read"
                    self._read(cap, iface, handle, flows, maker)
                finally:
                    cap.close()
            except Exception as exc:  # the capture loop must not die: count, log, retry
                errors.inc()
                absent = isinstance(exc, OSError) and exc.errno in (errno.ENODEV, errno.ENXIO)
                self._set_up(iface, False)
                if not failed_before:  # one line per change of state, not one per retry
                    log.error("capture_down", iface=iface, stage=stage, error=str(exc),
                              error_type=type(exc).__name__,
                              detail="no packets are seen on this interface until it"
                                     " recovers; retried")
                failed_before = True
                log.debug("capture_failed", iface=iface, stage=stage, error=str(exc),
                          retry_in=round(delay, 1))
            else:
                self._set_up(iface, False)  # stopping
            if first is not None:
                first.set()  # a failed first attempt also lets start() return
            if time.monotonic() - opened >= STABLE_AFTER:
                delay = self.retry_initial
            # an absent interface is looked for at the first interval, not backed off:
            # it may be created (a VLAN, a veth, a renamed NIC) and must be captured at once
            wait = self.retry_initial if absent else delay
            if self._stop.is_set() or self._stop.wait(wait):
                break
            if not absent:
                delay = min(delay * 2, self.retry_max)
        flows.flush(time.time())

    @staticmethod
    def _learned(maker: EventMaker, ts: float, why: str, count: int) -> None:
        """One line when an interface's station table stops learning the segment."""
        log.info("station_learning_ended", iface=maker.iface, reason=why, stations=count,
                 detail=learning_ended_detail(why))

    def _read(self, cap: RingCapture, iface: str, handle: NetworkHandler, flows: FlowTable,
              maker: EventMaker) -> None:
        """Read one open capture until stopped; OSError when the socket fails."""
        packets = self.metrics.packets.labels(iface)
        dropped = self.metrics.packets_dropped.labels(iface)
        due = time.monotonic() + HOUSEKEEPING

        def housekeeping() -> None:
            nonlocal due
            now = time.monotonic()
            if now >= due:
                due = now + HOUSEKEEPING
                dropped.inc(cap.drops())
                flows.expire(time.time())

        def on_block(n: int) -> None:
            packets.inc(n)
            housekeeping()

        def set_iface(name: str) -> None:
            maker.iface = name

        try:
            cap.run(handle, self._stop, on_block, housekeeping,
                    set_iface if iface == "any" else None)
        finally:
            with contextlib.suppress(OSError):  # a failed socket may not answer; keep its error
                dropped.inc(cap.drops())


def build_network_source(config: Config, metrics: Metrics) -> NetworkSource | None:
    """The live source for ``config.network.interfaces``; None when there are none."""
    if not config.network.interfaces:
        return None
    return NetworkSource(config, metrics)
