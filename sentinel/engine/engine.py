"""The Engine: events in, alerts out. No I/O, one calling thread.

``process`` tests an event against the candidate rules the index gives, then
runs each matching rule's threshold or change logic and its suppression.
``advance`` moves time when no event comes (suppression summaries, window
expiry). ``swap`` installs a new :class:`RuleSet` in one attribute assignment;
the state of every rule whose fingerprint is unchanged carries over.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from sentinel.alert import Alert, new_alert_id
from sentinel.engine.loader import RuleSet
from sentinel.engine.rules import Rule
from sentinel.engine.state import ChangeState, SuppressState, ThresholdState
from sentinel.events import Event
from sentinel.metrics import Metrics

# stdlib logging, which sentinel.logs renders like the rest: a replay that never
# fails need not load the structured-logging stack
log = logging.getLogger("sentinel.engine")

#: 1 event in this many has its evaluation time observed (timing costs more than matching)
TIMING_SAMPLE = 16


@dataclass
class RuleMemory:
    """The state one rule carries between events."""

    threshold: ThresholdState | None = None
    change: ChangeState | None = None
    suppress: SuppressState | None = None


@dataclass
class _Active:
    rules: RuleSet
    memory: dict[str, RuleMemory] = field(default_factory=dict)


class Engine:
    """Matches events against a rule set; see the module docstring."""

    def __init__(self, rules: RuleSet, host: str | None = None, metrics: Metrics | None = None,
                 max_groups: int = 10000) -> None:
        self.host = host or socket.gethostname()
        self.metrics = metrics
        self.max_groups = max_groups
        self._seen = 0
        self._failed: set[str] = set()
        self._alert_counters: dict[tuple[str, str], Any] = {}  # (rule, severity) -> child
        self._active = self._build(rules, {})

    @property
    def rules(self) -> RuleSet:
        return self._active.rules

    def swap(self, rules: RuleSet) -> None:
        """Replace the rule set; unchanged rules keep their state."""
        old = self._active
        carried = {r.id: old.memory[r.id] for r in old.rules.rules
                   if r.id in old.memory}
        fingerprints = {r.id: r.fingerprint for r in old.rules.rules}
        keep = {r.id: carried[r.id] for r in rules.rules
                if fingerprints.get(r.id) == r.fingerprint and r.id in carried}
        self._active = self._build(rules, keep)

    def _build(self, rules: RuleSet, keep: dict[str, RuleMemory]) -> _Active:
        memory: dict[str, RuleMemory] = {}
        for r in rules.rules:
            if r.id in keep:
                memory[r.id] = keep[r.id]
            elif r.threshold or r.change or r.suppress:
                memory[r.id] = self._memory(r)
        if self.metrics is not None:
            self.metrics.rules_loaded.set(len(rules))
        return _Active(rules, memory)

    def _memory(self, r: Rule) -> RuleMemory:
        evict = self._evictor(r.id)
        return RuleMemory(
            ThresholdState(r.threshold, self.max_groups, evict) if r.threshold else None,
            ChangeState(r.change, self.max_groups, evict) if r.change else None,
            SuppressState(r.suppress, self.max_groups, evict) if r.suppress else None,
        )

    def _evictor(self, rule_id: str) -> Any:
        metrics = self.metrics
        if metrics is None:
            return lambda: None
        counter = metrics.rule_state_evictions.labels(rule_id)
        return counter.inc

    # -- events ----------------------------------------------------------

    def process(self, event: Event) -> list[Alert]:
        """Every alert ``event`` raises, in rule order. Time is ``event.time``."""
        active = self._active
        self._seen += 1
        timed = self.metrics is not None and self._seen % TIMING_SAMPLE == 0
        started = time.perf_counter() if timed else 0.0
        out: list[Alert] = []
        t = event.time
        for rule in active.rules.index.candidates(event):
            try:
                if rule.active is not None and not rule.active(t):
                    continue
                if not rule.match(event):
                    continue
                mem = active.memory.get(rule.id)
                if mem is None:
                    out.append(self._alert(rule, event, 1, {}))
                else:
                    out.extend(self._stateful(rule, mem, event))
            except Exception:  # a rule must never stop the others
                if rule.id not in self._failed:
                    self._failed.add(rule.id)
                    log.error("rule_failed", extra={"component": "engine", "rule": rule.id,
                                                    "kind": event.kind,
                                                    "exception": traceback.format_exc()})
        if timed and self.metrics is not None:
            self.metrics.rule_eval_seconds.observe(time.perf_counter() - started)
        if out:
            self._count(out)
        return out

    def _count(self, alerts: list[Alert]) -> None:
        if self.metrics is None:
            return
        counters = self._alert_counters
        for a in alerts:
            child = counters.get((a.rule, a.severity))
            if child is None:  # labels() takes a lock and checks its labels: once per pair
                child = counters[a.rule, a.severity] = self.metrics.alerts.labels(a.rule,
                                                                                  a.severity)
            child.inc()

    def _stateful(self, rule: Rule, mem: RuleMemory, ev: Event) -> list[Alert]:
        extra: dict[str, Any] = {}
        count = 1
        if rule.threshold is not None and mem.threshold is not None:
            spec = rule.threshold
            crossed = mem.threshold.see(ev)
            if crossed is None:
                return []
            key, measured, count = crossed
            extra["group"] = {ref.text: v for ref, v in zip(spec.group_by, key, strict=True)}
            extra["threshold"] = {"measure": spec.measure, "field": spec.field.text
                                  if spec.field else None, "value": _num(measured),
                                  "at_least": _num(spec.at_least), "window_seconds": spec.window}
        elif rule.change is not None and mem.change is not None:
            key = rule.change.key_of(ev)
            value = rule.change.value.get(ev)
            if value is None or None in key:
                return []
            changed, previous = mem.change.see(key, _hashable(value))
            if not changed:
                return []
            extra["key"] = {ref.text: v for ref, v in zip(rule.change.key, key, strict=True)}
            extra["previous"] = previous
            extra["current"] = value
        alert = self._alert(rule, ev, count, extra)
        if rule.suppress is None or mem.suppress is None:
            return [alert]
        skey = rule.suppress.key_of(ev)
        group = {ref.text: v for ref, v in zip(rule.suppress.key, skey, strict=True)}
        return mem.suppress.offer(skey, alert, group)

    def _alert(self, rule: Rule, ev: Event, count: int, extra: dict[str, Any]) -> Alert:
        title, texts = rule.render(ev, count)  # the site language, every language in i18n
        extra = {**texts, **extra}
        return Alert(
            rule=rule.id,
            title=title,
            severity=rule.severity_at(ev.time),
            time=ev.time,
            host=self.host,
            source=ev.source,
            tags=rule.tags,
            event=ev.to_dict(),
            count=count,
            id=new_alert_id(ev.time),
            extra=extra,
        )

    def advance(self, now: float) -> list[Alert]:
        """Let time pass: summaries of suppression periods ended by ``now``; expire windows."""
        out: list[Alert] = []
        for mem in self._active.memory.values():
            if mem.suppress is not None:
                out.extend(mem.suppress.expire(now))
            if mem.threshold is not None:
                mem.threshold.expire(now)
        if out:
            self._count(out)
        return out

    def flush(self, now: float) -> list[Alert]:
        """At shutdown: end every open suppression period now, so no folded count is lost."""
        out: list[Alert] = []
        for mem in self._active.memory.values():
            if mem.suppress is not None:
                out.extend(mem.suppress.flush(now))
        if out:
            self._count(out)
        return out


def _hashable(v: Any) -> Any:
    """A field value usable as a dict key (list fields become tuples)."""
    return tuple(v) if type(v) is list else v


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v
