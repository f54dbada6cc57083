"""What an attestation says about this server, and the daemon's :class:`Attestor`.

:func:`build_statement` gathers the facts (baseline Merkle root, rules digest,
journal head, schedules in force); :class:`Attestor` decides when the daemon
writes one: on start, whenever a schedule window opens or closes, and every
``attest.interval``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel import __version__, logs
from sentinel.attest.keys import AttestKeyError, load_private_key
from sentinel.attest.merkle import MerkleTree
from sentinel.attest.statement import FORMAT, GENESIS, Attestation, AttestationError, Store
from sentinel.config import Config
from sentinel.events import format_time
from sentinel.metrics import Metrics

_log = logs.get("attest")
#: After a failed write, wait this long before trying again (the loop calls every second).
RETRY_AFTER = 60.0


class AttestError(Exception):
    """The facts for an attestation could not be gathered; the message says why."""


def load_tree(config: Config) -> MerkleTree:
    """The Merkle tree over the signed baseline; AttestError if absent or not authentic."""
    from sentinel.keys import load_key
    from sentinel.sources.fim.baseline import Baseline

    path = config.in_state(config.fim.baseline)
    if not path.exists():
        msg = f"no baseline at {path}; make one with `sentinel baseline init`"
        raise AttestError(msg)
    try:
        key = load_key(config.fim.key, config.state_dir, create=False, what="fim")
        baseline = Baseline.open(path, key)
        try:
            return MerkleTree.from_records(baseline.records())
        finally:
            baseline.close()
    except Exception as exc:
        # the baseline's own errors say which file and why; an invalid
        # signature is one of them, and must stop the tree from being trusted
        msg = str(exc) if str(path) in str(exc) else f"baseline {path}: {exc}"
        raise AttestError(msg) from exc


def baseline_summary(config: Config) -> dict[str, Any]:
    """``{"status": "ok"|"missing"|"invalid", "merkle_root", "leaf_count", "problem"}``."""
    path = config.in_state(config.fim.baseline)
    if not path.exists():
        return {"status": "missing", "merkle_root": None, "leaf_count": None,
                "problem": f"no baseline at {path}"}
    try:
        tree = load_tree(config)
    except AttestError as exc:
        return {"status": "invalid", "merkle_root": None, "leaf_count": None,
                "problem": str(exc)}
    return {"status": "ok", "merkle_root": tree.root.hex(), "leaf_count": len(tree),
            "problem": None}


def schedules_summary(config: Config, now: float) -> dict[str, Any]:
    """Every named schedule, its windows (RFC 3339 UTC) and whether one is open at ``now``."""
    return {
        name: {
            "active": any(w.contains(now) for w in wins),
            "windows": [{"start": format_time(w.start.timestamp()),
                         "end": format_time(w.end.timestamp())} for w in wins],
        }
        for name, wins in sorted(config.schedules.items())
    }


def schedule_boundaries(config: Config) -> list[float]:
    """Every start and end of every schedule window, ascending."""
    return sorted({t for wins in config.schedules.values() for w in wins
                   for t in (w.start.timestamp(), w.end.timestamp())})


def read_journal_head(config: Config) -> tuple[int, str]:
    """(records, MAC of the last) from the journal's last line, for a one-off attestation."""
    from sentinel.sinks.journal import journal_files

    for f in reversed(journal_files(config.in_state(config.outputs.journal.path))):
        with f.open("rb") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
        for raw in reversed(lines):
            try:
                rec = json.loads(raw)
                return int(rec["seq"]) + 1, str(rec["mac"])
            except (ValueError, KeyError, TypeError):
                continue  # a crash-truncated last line: the record before it is the head
    return 0, GENESIS


def build_statement(config: Config, now: float, sequence: int, previous: str,
                    rules_digest: str, journal_head: tuple[int, str],
                    baseline: dict[str, Any], reason: str,
                    changes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The statement to sign (no floats, so every reader gets the same bytes).

    ``changes`` are the reloads that changed the rules or config since the last
    attestation (:mod:`sentinel.selfwatch.reload_diff`); the key is present only then.
    """
    records, head = journal_head
    out: dict[str, Any] = {
        "format": FORMAT,
        "sequence": sequence,
        "previous": previous,
        "time": format_time(now),
        "reason": reason,
        "host": config.host.name,
        "sentinel_version": __version__,
        "rules_digest": rules_digest,
        "baseline": baseline,
        "journal": {"records": records, "head": head},
        "schedules": schedules_summary(config, now),
    }
    if changes:
        out["changes"] = changes
    return out


class Attestor:
    """Writes chained attestations from the daemon's main loop.

    ``maybe_attest(now)`` is cheap when nothing is due; it writes one on the
    first call, when a schedule boundary was crossed since the last call, and
    once ``attest.interval`` has passed since the last one written. It does
    nothing until the private key exists (``sentinel attest keygen``).
    """

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        rules_digest: Callable[[], str] = lambda: "",
        journal_head: Callable[[], tuple[int, str]] = lambda: (0, GENESIS),
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.rules_digest = rules_digest
        self.journal_head = journal_head
        self.reconfigure(config)
        self._seen: float | None = None  # the last `now` looked at
        self._written: float | None = None  # when the last one was written
        self._due: str | None = None
        self._retry_at = float("-inf")
        self._last_error: str | None = None
        #: The attestation :meth:`write` made last.
        self.last_written: Attestation | None = None
        self._changes: list[dict[str, Any]] = []

    def note_change(self, change: dict[str, Any]) -> None:
        """A reload changed rules or config: the next attestation (made soon) lists it."""
        # bounded: without a key nothing is written, and reloads must not grow memory
        self._changes = [*self._changes[-99:], change]
        if self._due is None:
            self._due = "reload"

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config (schedules, interval, key, folder) without a new start."""
        self.config = config
        self.key_path = config.in_state(config.attest.key_file)
        self.store = Store(config.in_state(config.attest.dir))
        self._boundaries = schedule_boundaries(config)

    def maybe_attest(self, now: float | None = None) -> Path | None:
        """Write an attestation if one is due; its path, or None."""
        now = self.clock() if now is None else now
        if not self.key_path.exists():
            return None
        reason = self._reason(now)
        if reason is not None and self._due is None:
            self._due = reason
        if self._due is None or now < self._retry_at:
            return None
        try:
            path = self.write(now, self._due)
        except Exception as exc:  # the daemon's loop must not die of a failed attestation
            self.metrics.attestations.labels("failure").inc()
            self._retry_at = now + RETRY_AFTER
            if str(exc) != self._last_error:
                _log.error("cannot_write_attestation", detail="retrying", reason=self._due,
                           error=str(exc), retry_in=RETRY_AFTER)
                self._last_error = str(exc)
            return None
        att = self.last_written
        if att is not None:
            _log.info("attestation_written", path=str(path), sequence=att.sequence,
                      reason=self._due, baseline=att.statement["baseline"]["status"],
                      journal_records=att.statement["journal"]["records"])
        self._due, self._written, self._last_error = None, now, None
        self._retry_at = float("-inf")
        return path

    def _reason(self, now: float) -> str | None:
        seen, self._seen = self._seen, now if self._seen is None else max(self._seen, now)
        if seen is None:
            return "start"
        if any(seen < b <= now for b in self._boundaries):
            return "boundary"
        if self._written is not None and now - self._written >= self.config.attest.interval:
            return "interval"
        return None

    def write(self, now: float, reason: str) -> Path:
        """Sign and write the next attestation now (whatever is due)."""
        try:
            private = load_private_key(self.key_path)
        except AttestKeyError as exc:
            raise AttestError(str(exc)) from exc
        digest = self.rules_digest()
        head = self.journal_head()
        baseline = baseline_summary(self.config)

        changes = list(self._changes)

        def make(sequence: int, previous: str) -> dict[str, Any]:
            return build_statement(self.config, now, sequence, previous, digest, head,
                                   baseline, reason, changes)

        try:
            path, att = self.store.append(make, private)
        except AttestationError as exc:
            raise AttestError(str(exc)) from exc
        del self._changes[:len(changes)]
        self.metrics.attestations.labels("success").inc()
        self.metrics.attestation_last_time.set(now)
        self.last_written = att
        return path
