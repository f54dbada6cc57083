"""Heartbeats: proof of life that the central side notices when it stops.

Every ``alertmanager`` webhook (every ``DEFAULT_AM`` unless its ``heartbeat``
says otherwise; ``heartbeat: 0s`` switches it off) and every ``json`` webhook
with ``heartbeat: <interval>`` gets an alert ``sentinel-heartbeat`` (severity
``info``) every interval, whatever its ``min_severity`` or rule filters:

* ``alertmanager`` format: it is one always-firing alert per host (the
  ``Watchdog`` pattern). Each beat moves its ``endsAt`` on; when the beats stop
  (the host, the daemon or its network is gone), Alertmanager resolves it
  ``resolve_after`` later, and the central side routes it to a dead man's
  switch or notifies the resolve (docs/fleet.md).
* ``json`` format: a POST every interval, signed like every alert.

Heartbeats go straight into the target's spool: they are not journaled (they
say nothing worth keeping, and would fill the journal).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from sentinel import __version__, logs
from sentinel.config import Config
from sentinel.selfwatch.alerts import HEARTBEAT, self_alert
from sentinel.sinks.journal import alert_json

log = logs.get("selfwatch")

#: An Alertmanager target's heartbeat when its config names none: a dead sensor must
#: be noticed even where nobody thought of it.
DEFAULT_AM = 60.0


class Targets(Protocol):
    @property
    def targets(self) -> list[Any]: ...


class Heartbeat:
    """Call :meth:`beat` about once a second with the live delivery sink."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self._last: dict[str, float] = {}
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.every: dict[str, float] = {}
        for h in config.outputs.webhooks:
            every = h.heartbeat
            if every is None and h.format == "alertmanager":
                every = DEFAULT_AM
            if every:
                self.every[h.name] = every

    def beat(self, sink: Targets, rules_loaded: int = 0) -> int:
        """Send the heartbeats that are due; how many targets got one."""
        now = self.clock()
        due = [name for name, every in self.every.items()
               if now - self._last.get(name, float("-inf")) >= every]
        if not due:
            return 0
        alert = self_alert(
            self.config, HEARTBEAT, f"sentinel on {self.config.host.name} is alive", "info",
            now, "heartbeat",
            "Always firing while sentinel runs. When it stops arriving (resolves), the"
            " sensor, its host or its network is down: treat as a blind sensor.",
            (f"sentinel di {self.config.host.name} aktif",
             "Selalu menyala selama sentinel berjalan. Jika berhenti diterima (selesai),"
             " sensor, host-nya, atau jaringannya mati: perlakukan sebagai sensor yang buta."),
            version=__version__, uptime=round(now - self.started), rules_loaded=rules_loaded)
        body = alert_json(alert)
        sent = 0
        for target in sink.targets:
            if target.name not in due:
                continue
            payload = target.payload(alert, body)
            for lane in target.lanes:
                try:
                    lane.spool.insert(alert.id, payload, now)
                except Exception:
                    log.exception("cannot_spool_heartbeat", target=lane.name)
                    continue
                lane.wake()
            self._last[target.name] = now
            sent += 1
        return sent
