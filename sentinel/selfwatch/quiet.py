"""Capture gone quiet: an interface that saw packets and then none for ``quiet_after``.

A pulled cable, a mirror port removed on the switch, a socket filter detached:
capture keeps "running" and sees nothing, and nothing else would say so. This
reads the capture's own per-interface packet counter
(``sentinel_packets_total{iface}``) rather than hooking into capture, sets
``sentinel_capture_quiet{iface}`` and says when it goes quiet and when traffic
comes back (one log line and one alert per change of state).

An interface that never saw a packet since start is not "quiet" (a lab, an
unplugged spare): the Prometheus rule on ``sentinel_packets_total`` covers a
sensor that never saw anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge

from sentinel import logs
from sentinel.alert import Alert
from sentinel.config import Config
from sentinel.metrics import Metrics
from sentinel.selfwatch.alerts import CAPTURE_QUIET, CAPTURE_RESUMED, in_schedule, self_alert

log = logs.get("selfwatch")


@dataclass
class _Iface:
    count: float = 0.0
    changed: float = 0.0  # monotonic time the count last went up
    seen: bool = False
    quiet: bool = False


class QuietWatch:
    """Call :meth:`check` about once a second; it returns the alerts to raise."""

    def __init__(self, config: Config, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.clock = clock
        self.wall = wall
        self.gauge = Gauge("sentinel_capture_quiet",
                           "1 while an interface that saw traffic has seen none for"
                           " network.quiet_after", ["iface"], registry=metrics.registry)
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self.config = config
        old = getattr(self, "_ifaces", {})
        self._ifaces: dict[str, _Iface] = {i: old.get(i, _Iface(changed=self.clock()))
                                            for i in config.network.interfaces}
        for iface in self._ifaces:
            self.gauge.labels(iface).set(1 if self._ifaces[iface].quiet else 0)

    def _count(self, iface: str) -> float:
        v = self.metrics.registry.get_sample_value("sentinel_packets_total", {"iface": iface})
        return v or 0.0

    def check(self) -> list[Alert]:
        now = self.clock()
        out: list[Alert] = []
        for iface, st in self._ifaces.items():
            count = self._count(iface)
            if count > st.count:
                st.count, st.changed, st.seen = count, now, True
                if st.quiet:
                    st.quiet = False
                    self.gauge.labels(iface).set(0)
                    log.info("capture_resumed", iface=iface)
                    out.append(self._alert(iface, resumed=True, silent_for=0.0))
            elif st.seen and not st.quiet and now - st.changed >= self.config.network.quiet_after:
                st.quiet = True
                self.gauge.labels(iface).set(1)
                log.error("capture_quiet", iface=iface, silent_for=round(now - st.changed, 1),
                          hint="cable, mirror port or capture filter: check the sensor's"
                               " link and the switch")
                out.append(self._alert(iface, resumed=False, silent_for=now - st.changed))
        return out

    def _alert(self, iface: str, resumed: bool, silent_for: float) -> Alert:
        now = self.wall()
        if resumed:
            return self_alert(self.config, CAPTURE_RESUMED, f"traffic on {iface} again",
                              "info", now, "capture_resumed",
                              f"Packets arrive on {iface} again after it was quiet.",
                              (f"lalu lintas di {iface} kembali ada",
                               f"Paket kembali diterima di {iface} setelah sempat sepi."),
                              iface=iface)
        open_now = in_schedule(self.config, now)
        return self_alert(
            self.config, CAPTURE_QUIET, f"no packets on {iface} for {silent_for:.0f}s",
            "critical" if open_now else "high", now, "capture_quiet",
            f"{iface} saw traffic and has seen none for {silent_for:.0f}s"
            f" (network.quiet_after {self.config.network.quiet_after:g}s): a pulled cable,"
            " a removed mirror port or a detached filter leaves sentinel blind to the network.",
            (f"tidak ada paket di {iface} selama {silent_for:.0f} detik",
             f"{iface} sebelumnya menerima lalu lintas dan sudah {silent_for:.0f} detik tidak"
             f" menerima apa pun (network.quiet_after {self.config.network.quiet_after:g} detik):"
             " kabel yang dicabut, port mirror yang dilepas, atau filter yang dilepas membuat"
             " sentinel buta terhadap jaringan."),
            iface=iface, silent_for=round(silent_for), schedules_open=open_now)
