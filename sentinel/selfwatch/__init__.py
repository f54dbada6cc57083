"""The watcher watches itself: sentinel's alerts about its own state.

What the daemon calls (small hooks, so that the wiring stays readable)::

    guard = SelfGuard(config, metrics, submit)
    guard.at_start(sink)            # after the journal opens, before sources start:
                                    # a cut journal, a deleted baseline -> alerts
    guard.journaled(sink)           # after every append; flush() signs the head beside it
    guard.reloaded(old_cfg, new_cfg, old_rules, new_rules)   # -> alert + attestation
    guard.tick(sink, rules)         # main loop: quiet capture, heartbeat
    guard.start_mounts(sources)     # the mount table, and files with several hard links
    guard.stop()

See rules/README.md ("Self-protection") for every alert it raises.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from sentinel import logs
from sentinel.alert import Alert
from sentinel.config import Config
from sentinel.engine import RuleSet
from sentinel.metrics import Metrics
from sentinel.selfwatch.alerts import MOUNT_OVER_WATCHED, RULES, in_schedule, self_alert
from sentinel.selfwatch.heartbeat import Heartbeat
from sentinel.selfwatch.journal_head import HeadMarker
from sentinel.selfwatch.links import LinkWatch
from sentinel.selfwatch.mounts import Mount, MountWatch, affected
from sentinel.selfwatch.quiet import QuietWatch
from sentinel.selfwatch.reload_diff import (
    addresses_alert,
    config_digest,
    learned_only,
    reload_alert,
    reload_summary,
)
from sentinel.selfwatch.start_checks import (
    baseline_missing,
    journal_cut,
    journal_cut_alert,
    mark_run,
)

log = logs.get("selfwatch")

#: The journal's signed head is renewed at most this often (and at start and stop).
MARKER_EVERY = 1.0

__all__ = ["SelfGuard"]


class JournalSink(Protocol):
    """What the guard needs of the delivery sink."""

    def journal_head(self) -> tuple[int, str]: ...

    @property
    def journal(self) -> Any: ...

    @property
    def targets(self) -> list[Any]: ...


class SelfGuard:
    """Raises sentinel's alerts about itself through ``submit`` (the daemon's sink)."""

    def __init__(self, config: Config, metrics: Metrics, submit: Callable[[Alert], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.metrics = metrics
        self.submit = submit
        self.clock = clock
        self.config_digest = config_digest(config.source)
        self._marker: HeadMarker | None = None
        self._marker_failing = False
        self._marker_at = float("-inf")
        self._dirty = False
        self.marker_errors = Counter(
            "sentinel_journal_head_errors",
            "Failures to write the journal's signed head marker", registry=metrics.registry)
        self.attest_interval = Gauge(
            "sentinel_attestation_interval_seconds",
            "attest.interval while attestations are made (a key exists), else 0",
            registry=metrics.registry)
        for rule, sev in RULES.items():
            metrics.alerts.labels(rule, sev)
        self.quiet = QuietWatch(config, metrics)
        self.heartbeat = Heartbeat(config, clock)
        for reason in ("mount", "hardlink"):
            metrics.fim_rescans.labels(reason)
        self.mounts = MountWatch(self._mounts_changed)
        self.links = LinkWatch(config, lambda path: self._rescan(path, "hardlink"))
        self._sources: Callable[[], list[Any]] = list

    # -- start ---------------------------------------------------------------

    def at_start(self, sink: JournalSink) -> None:
        """Check the journal against its signed heads and the baseline against evidence."""
        now = self.clock()
        key: bytes = sink.journal.key
        self._marker = HeadMarker(self.config.in_state(self.config.outputs.journal.path), key)
        alerts: list[Alert] = []
        cut = journal_cut(self.config, key, sink.journal_head())
        if cut is not None:
            alerts.append(journal_cut_alert(self.config, cut, now))
        missing = baseline_missing(self.config, now)
        if missing is not None:
            alerts.append(missing)
        mark_run(self.config)
        for alert in alerts:
            self.submit(alert)
        self.flush(sink, force=True)

    def journaled(self, sink: JournalSink) -> None:
        """An alert was appended: the signed head is renewed at the next :meth:`flush`."""
        self._dirty = True

    def flush(self, sink: JournalSink, force: bool = False) -> None:
        """Sign the journal's head beside it: at most every MARKER_EVERY, and at once when
        ``force`` (start, stop).

        The journal file is synced first, so that the marker never signs records a
        power cut could still take (fsync: interval or none), which would read as a cut
        journal at the next start. Rate-limited so that a burst of alerts costs one
        marker, not one per alert; a crash leaves it at most MARKER_EVERY behind, which
        reads as "more records than signed", never as a cut.
        """
        if self._marker is None or not (self._dirty or force):
            return
        now = time.monotonic()
        if not force and now - self._marker_at < MARKER_EVERY:
            return
        journal = sink.journal
        if self._marker.journal != journal.path:  # a reload moved the journal
            self._marker = HeadMarker(journal.path, journal.key)
        self._dirty, self._marker_at = False, now
        try:
            head = sink.journal_head()
            if head[0]:
                fd = os.open(journal.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            self._marker.update(head)
        except OSError as exc:
            self._dirty = True
            self.marker_errors.inc()
            if not self._marker_failing:
                log.error("cannot_write_journal_head_marker",
                          detail="a cut journal would go unnoticed until this is fixed",
                          path=str(self._marker.path),
                          error=exc.strerror)
            self._marker_failing = True
            return
        if self._marker_failing:
            log.info("journal_head_marker_written_again", path=str(self._marker.path))
        self._marker_failing = False

    # -- reload --------------------------------------------------------------

    def reloaded(self, old: Config, new: Config, old_rules: RuleSet, new_rules: RuleSet
                 ) -> dict[str, Any] | None:
        """Raise the reload alert when anything changed; the change, for the attestation."""
        digest = config_digest(new.source)
        summary = reload_summary(old, new, old_rules, new_rules, self.config_digest, digest)
        self.config = new
        self.config_digest = digest
        self.quiet.reconfigure(new)
        self.heartbeat.reconfigure(new)
        self.links.config = new  # read at its next walk
        if summary is None:
            return None
        now = self.clock()
        if learned_only(summary):
            # the daemon's own reload: the kernel's addresses changed, no one's config
            alert = addresses_alert(old, new, summary, now)
            log.info("reload_learned_addresses", title=alert.title)
        else:
            alert = reload_alert(new, summary, now)
            log.warning("reload_changed_rules_or_config",
                        **{k: v for k, v in summary.items() if not k.endswith(("_old", "_new"))})
        self.submit(alert)
        return {"time": alert.event["time"], "alert_id": alert.id, **summary}

    # -- every second ----------------------------------------------------------

    def submit_failed(self) -> None:
        """An alert could not even be handed to the journal (the daemon logged why).

        A journal that cannot be written holds the alert and counts the failure
        itself; this counts what raised past it (a closed or broken sink).
        """
        self.metrics.journal_write_failures.inc()

    def tick(self, sink: JournalSink, rules_loaded: int) -> None:
        """Quiet interfaces and heartbeats (from the daemon's main loop)."""
        key = self.config.in_state(self.config.attest.key_file)
        self.attest_interval.set(self.config.attest.interval if key.exists() else 0)
        self.flush(sink)
        for alert in self.quiet.check():
            self.submit(alert)
        try:
            self.heartbeat.beat(sink, rules_loaded)
        except Exception:
            # the main loop must go on; a missing heartbeat is what the central side sees
            log.exception("heartbeat_failed")

    # -- the mount table -------------------------------------------------------

    def start_mounts(self, sources: Callable[[], list[Any]]) -> None:
        """Watch the mount table and hard-linked files; ``sources`` gives the running
        sources (FIM rescans)."""
        self._sources = sources
        self.mounts.start()
        self.links.start()

    def stop(self) -> None:
        self.mounts.stop()
        self.links.stop()

    def health(self) -> dict[str, bool]:
        """The guard's own workers, once started (for /healthz and component_up)."""
        if not self.mounts.started:
            return {}
        return {"mount-watch": self.mounts.alive(), "link-watch": self.links.alive()}

    def _rescan(self, path: str, reason: str = "mount") -> None:
        for src in self._sources():
            if hasattr(src, "request_rescan"):
                src.request_rescan(reason, path)

    def _mounts_changed(self, new: list[Mount], gone: list[Mount]) -> None:
        watched = [(str(p.path), p.recursive) for p in self.config.fim.paths]
        for m in gone:
            for path in affected(m, watched):
                self._rescan(path)
        for m in new:
            hit = affected(m, watched)
            if not hit:
                continue
            now = self.clock()
            open_now = in_schedule(self.config, now)
            log.error("mount_over_watched_path", mount_point=m.point, fs_type=m.fs_type,
                      source=m.source, watched=hit)
            self.submit(self_alert(
                self.config, MOUNT_OVER_WATCHED,
                f"a file system was mounted over watched {m.point}", "critical", now, "mount",
                f"{m.source} ({m.fs_type}, {m.root}) was mounted at {m.point}, covering the"
                f" watched {', '.join(hit[:5])}: a bind mount shows other files at the same"
                " paths without any file event. Rescanned at once; see the file alerts that"
                " follow. `findmnt` lists the mounts.",
                (f"sebuah sistem berkas dipasang (mount) di atas {m.point} yang dipantau",
                 f"{m.source} ({m.fs_type}, {m.root}) dipasang di {m.point}, menutupi"
                 f" {', '.join(hit[:5])} yang dipantau: bind mount menampilkan berkas lain pada"
                 " path yang sama tanpa kejadian berkas apa pun. Telah dipindai ulang seketika;"
                 " lihat peringatan berkas berikutnya. `findmnt` menampilkan daftar mount."),
                mount_point=m.point, mount_source=m.source, fs_type=m.fs_type,
                mount_root=m.root, paths=hit, schedules_open=open_now))
            for path in hit:
                self._rescan(path)
