"""The Engine: events in, alerts out. No I/O, one calling thread.

``process`` tests an event against the candidate groups the index gives, then
runs each matching group's threshold or change logic once, and each member
rule's suppression and storm control. A *group* is the rules that decide alike
(same kinds, condition, schedule, threshold or change — see
``Rule.behaviour``) and carry the same state: a site that copies a rule for
each of its servers pays for one test per event, not one per copy. Alerts come
in rule order whatever the grouping. ``advance`` moves time when no event
comes (suppression and storm summaries, window expiry). ``swap`` installs a
new :class:`RuleSet` in one attribute assignment; the state of every rule
whose fingerprint is unchanged carries over.

``Engine(..., indexed=False)`` is the reference: every rule of the event's
kind tested on its own, in a plain loop. Tests hold the indexed engine to it.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel.alert import Alert, new_alert_id
from sentinel.config import StormConfig
from sentinel.engine.groups import Group, PlainIndex, RuleMemory
from sentinel.engine.index import RuleIndex
from sentinel.engine.loader import RuleSet
from sentinel.engine.rules import Rule
from sentinel.engine.state import (
    ChangeState,
    StormState,
    SuppressState,
    ThresholdState,
)
from sentinel.events import SOURCES, Event
from sentinel.metrics import Metrics

# stdlib logging, which sentinel.logs renders like the rest: a replay that never
# fails need not load the structured-logging stack
log = logging.getLogger("sentinel.engine")

#: 1 event in this many has its evaluation time observed (timing costs more than matching)
TIMING_SAMPLE = 16
DEFAULT_STORM = StormConfig()
#: Fields that name what a storm's folded alerts were about, when the rule has no key.
_SAMPLE_FIELDS = ("src_ip", "dst_ip", "dst_port", "qname", "sender_ip", "sender_mac", "path")


@dataclass
class _Active:
    rules: RuleSet
    memory: dict[str, RuleMemory] = field(default_factory=dict)
    groups: tuple[Group, ...] = ()
    index: Any = None
    order: dict[str, int] = field(default_factory=dict)  # rule id -> position
    #: what advance() looks at: suppression and storm states, threshold states
    timed: tuple[tuple[SuppressState | None, StormState | None], ...] = ()
    windows: tuple[ThresholdState, ...] = ()


class Engine:
    """Matches events against a rule set; see the module docstring."""

    def __init__(self, rules: RuleSet, host: str | None = None, metrics: Metrics | None = None,
                 max_groups: int = 10000, storm: StormConfig | None = DEFAULT_STORM,
                 indexed: bool = True) -> None:
        self.host = host or socket.gethostname()
        self.metrics = metrics
        self.max_groups = max_groups
        self.storm = storm
        self.indexed = indexed
        self._seen = 0
        self._failed: set[str] = set()
        self._now = 0.0  # the latest event or advance time: when a reload closes periods
        self._retired: list[RuleMemory] = []  # of rules a reload removed or changed
        self._alert_counters: dict[tuple[str, str], Any] = {}  # (rule, severity) -> child
        self._folded_counters: dict[str, Any] = {}  # rule -> its storm-folded child
        self._active = self._build(rules, {})

    @property
    def rules(self) -> RuleSet:
        return self._active.rules

    def swap(self, rules: RuleSet, storm: StormConfig | str | None = "unchanged") -> None:
        """Replace the rule set; unchanged rules keep their state.

        ``storm`` (a reload's ``rules.storm``) replaces the storm limit when it
        differs: every rule's open storm period then ends as a removed rule's does
        (its summary comes from the next ``advance``) and counting starts afresh
        under the new limit.

        A rule removed or changed has its open suppression and storm periods closed
        by the next ``advance`` (or ``flush``), which returns their summaries: a
        reload never loses a folded count. The closing is left to those calls
        because ``swap`` may run on another thread than ``process``, which may
        still be using the old states; everything else here is one assignment.
        """
        old = self._active
        fingerprints = {r.id: r.fingerprint for r in old.rules.rules}
        keep = {r.id: old.memory[r.id] for r in rules.rules
                if fingerprints.get(r.id) == r.fingerprint and r.id in old.memory}
        retired = [mem for rid, mem in old.memory.items() if rid not in keep]
        if not isinstance(storm, str) and storm != self.storm:
            self.storm = storm
            for rid, mem in keep.items():
                if mem.storm is not None:
                    retired.append(RuleMemory(storm=mem.storm))
                keep[rid] = RuleMemory(mem.threshold, mem.change, mem.suppress, None)
        self._active = self._build(rules, keep)
        self._retired.extend(retired)

    def _closing(self, now: float) -> list[Alert]:
        out: list[Alert] = []
        while self._retired:
            out.extend(self._close(self._retired.pop(0), now))
        return out

    def _close(self, mem: RuleMemory, now: float) -> list[Alert]:
        """End a rule's open suppression and storm periods as of ``now``: their summaries."""
        out: list[Alert] = []
        if mem.suppress is not None:
            ended = mem.suppress.flush(now)
            out.extend(self._storm_pass(mem.storm, ended, None)
                       if mem.storm is not None and ended else ended)
        if mem.storm is not None:
            out.extend(mem.storm.flush(now))
            if mem.storm.storming:
                mem.storm.storming = False
                mem.storm.on_change(False)
        return out

    def _build(self, rules: RuleSet, keep: dict[str, RuleMemory]) -> _Active:
        memory: dict[str, RuleMemory] = {}
        groups: dict[tuple[Any, ...], Group] = {}
        for r in rules.rules:
            kept = keep.get(r.id)
            carried = (kept.threshold or kept.change) if kept is not None else None
            # a carried state joins only the rules that carried the same one: rules
            # alike but with other histories would decide differently
            gkey = (r.behaviour, id(carried)) if self.indexed else (r.id,)
            g = groups.get(gkey)
            if g is None:
                if kept is not None:
                    shared = RuleMemory(kept.threshold, kept.change)
                else:
                    shared = self._shared(r)
                g = groups[gkey] = Group(r, shared)
            else:
                g.rules.append(r)
            memory[r.id] = RuleMemory(
                g.threshold, g.change,
                kept.suppress if kept is not None else self._suppress(r),
                kept.storm if kept is not None and kept.storm is not None else self._storm(r))
        for g in groups.values():
            evict = self._evictor([r.id for r in g.rules])
            for st in (g.threshold, g.change):
                if st is not None:
                    st.on_evict = evict
        ordered = tuple(sorted(groups.values(), key=lambda g: g.order))
        if self.metrics is not None:
            self.metrics.rules_loaded.set(len(rules))
        index = RuleIndex(ordered) if self.indexed else PlainIndex(ordered)
        timed = tuple((m.suppress, m.storm) for m in memory.values()
                      if m.suppress is not None or m.storm is not None)
        windows = tuple(g.threshold for g in ordered if g.threshold is not None)
        return _Active(rules, memory, ordered, index,
                       {r.id: i for i, r in enumerate(rules.rules)}, timed, windows)

    def _shared(self, r: Rule) -> RuleMemory:
        noop: Callable[[], None] = _noop
        return RuleMemory(
            ThresholdState(r.threshold, self.max_groups, noop) if r.threshold else None,
            ChangeState(r.change, self.max_groups, noop) if r.change else None)

    def _suppress(self, r: Rule) -> SuppressState | None:
        if r.suppress is None:
            return None
        return SuppressState(r.suppress, self.max_groups, self._evictor([r.id]))

    def _storm(self, r: Rule) -> StormState | None:
        limit = self.storm
        if limit is None or not any(_source(k) in limit.sources for k in r.kinds):
            return None
        rid = r.id
        metrics = self.metrics

        def on_change(storming: bool) -> None:
            # one line per change of state; the gauge says which rules fold now
            log.warning("alert_storm_started" if storming else "alert_storm_ended",
                        extra={"component": "engine", "rule": rid,
                               "max_alerts": limit.max_alerts, "period": limit.period})
            if metrics is not None:
                metrics.alert_storm.labels(rid).set(1 if storming else 0)
        return StormState(limit, on_change)

    def _evictor(self, rule_ids: list[str]) -> Callable[[], None]:
        metrics = self.metrics
        if metrics is None:
            return _noop
        counters = [metrics.rule_state_evictions.labels(rid) for rid in rule_ids]
        if len(counters) == 1:
            return counters[0].inc

        def each() -> None:
            for c in counters:
                c.inc()
        return each

    # -- events ----------------------------------------------------------

    def process(self, event: Event) -> list[Alert]:
        """Every alert ``event`` raises, in rule order. Time is ``event.time``."""
        active = self._active
        self._seen += 1
        timed = self.metrics is not None and self._seen % TIMING_SAMPLE == 0
        started = time.perf_counter() if timed else 0.0
        out: list[Alert] = []
        hit_groups = 0
        t = event.time
        if t > self._now:  # noqa: PLR1730 (max() costs a call per event)
            self._now = t
        for g in active.index.candidates(event):
            try:
                if g.active is not None and not g.active(t):
                    continue
                if not g.match(event):
                    continue
                decided = g.decide(event)
            except Exception:  # a rule must never stop the others
                for r in g.rules:
                    self._fail(r, event)
                continue
            if decided is None:
                continue
            hit_groups += 1
            count, extra = decided
            for r in g.rules:
                try:
                    out.extend(self._emit(r, active.memory.get(r.id), event, count, extra))
                except Exception:
                    self._fail(r, event)
        if hit_groups > 1:  # groups interleave in rule order; alerts must too
            order = active.order
            out.sort(key=lambda a: order[a.rule])
        if timed and self.metrics is not None:
            self.metrics.rule_eval_seconds.observe(time.perf_counter() - started)
        if out:
            self._count(out)
        return out

    def _fail(self, rule: Rule, event: Event) -> None:
        if rule.id not in self._failed:
            self._failed.add(rule.id)
            log.error("rule_failed", extra={"component": "engine", "rule": rule.id,
                                            "kind": event.kind,
                                            "exception": traceback.format_exc()})

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

    def _emit(self, rule: Rule, mem: RuleMemory | None, ev: Event, count: int,
              extra: dict[str, Any]) -> list[Alert]:
        if mem is None:
            return [self._alert(rule, ev, count, dict(extra))]
        if mem.storm is not None and mem.storm.folding(ev.time):
            return self._fold_unbuilt(rule, mem, mem.storm, ev, count, extra)
        key: dict[str, Any] | None = None
        if rule.suppress is not None and mem.suppress is not None:
            skey = rule.suppress.key_of(ev)
            if mem.suppress.fold_into(skey, ev.time, count):
                return []  # a repeat inside its period: counted, no alert to build
            key = {ref.text: v for ref, v in zip(rule.suppress.key, skey, strict=True)}
            alerts = mem.suppress.offer(skey, self._alert(rule, ev, count, dict(extra)), key)
        else:
            alerts = [self._alert(rule, ev, count, dict(extra))]
        if mem.storm is None:
            return alerts
        return self._storm_pass(mem.storm, alerts,
                                key if key is not None else _storm_key(ev, extra))

    def _fold_unbuilt(self, rule: Rule, mem: RuleMemory, storm: StormState, ev: Event,
                      count: int, extra: dict[str, Any]) -> list[Alert]:
        """:meth:`_emit` while the rule's storm folds: the alert is counted, not built
        (a flood from ever new sources would otherwise build and drop one per event);
        a suppression period it opens builds it only if its summary needs it."""
        out: list[Alert] = []
        key: dict[str, Any]
        if rule.suppress is not None and mem.suppress is not None:
            skey = rule.suppress.key_of(ev)
            if mem.suppress.fold_into(skey, ev.time, count):
                return out
            key = {ref.text: v for ref, v in zip(rule.suppress.key, skey, strict=True)}
            closed = mem.suppress.open(
                skey, lambda: self._alert(rule, ev, count, dict(extra)), ev.time, count, key)
            if closed is None:
                return out
            if closed:  # summaries of periods this one's opening ended
                out = self._storm_pass(storm, closed, key)
        else:
            key = _storm_key(ev, extra)
        storm.fold_in(count, ev.time, key)
        self._count_folded(storm, rule.id)
        return out

    def _storm_pass(self, storm: StormState, alerts: list[Alert],
                    key: dict[str, Any] | None) -> list[Alert]:
        out: list[Alert] = []
        for a in alerts:
            k = key if key is not None else a.extra.get("group") or {}
            out.extend(storm.offer(a, k))
        if alerts:
            self._count_folded(storm, alerts[0].rule)
        return out

    def _count_folded(self, storm: StormState, rule_id: str) -> None:
        """Add what ``storm`` folded since last asked to the rule's metric."""
        folded = storm.folded_total
        if folded and self.metrics is not None:
            storm.folded_total = 0
            child = self._folded_counters.get(rule_id)
            if child is None:  # labels() takes a lock and checks its labels: once per rule
                child = self._folded_counters[rule_id] = (
                    self.metrics.alerts_storm_folded.labels(rule_id))
            child.inc(folded)

    def _alert(self, rule: Rule, ev: Event, count: int, extra: dict[str, Any]) -> Alert:
        title, texts = rule.render(ev, count)  # the site language, every language in i18n
        extra = {**texts, **extra}
        if rule.incident is not None:
            extra = {"incident": rule.incident.render(ev, count), **extra}
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
        """Let time pass: summaries of suppression and storm periods ended by ``now``."""
        out: list[Alert] = self._closing(self._now) if self._retired else []
        self._now = max(self._now, now)
        active = self._active
        # called every second over every rule: test the cheap "anything due?" first
        for sup, storm in active.timed:
            if sup is not None and sup.folds:
                ended = sup.expire(now)
                out.extend(self._storm_pass(storm, ended, None)
                           if storm is not None and ended else ended)
            if storm is not None and storm.window_end <= now:
                out.extend(storm.expire(now))
        for th in active.windows:
            if th.groups:
                th.expire(now)
        if out:
            self._count(out)
        return out

    def flush(self, now: float) -> list[Alert]:
        """At shutdown: end every open suppression and storm period now, so no count is lost."""
        out: list[Alert] = self._closing(now) if self._retired else []
        for mem in self._active.memory.values():
            # as for a retired rule: a storm open at stop also ends, and says so once
            out.extend(self._close(mem, now))
        if out:
            self._count(out)
        return out


def _storm_key(ev: Event, extra: dict[str, Any]) -> dict[str, Any]:
    """What a storm summary samples of an alert: its group, its change key, or the
    event's identifying fields."""
    return extra.get("group") or extra.get("key") or {
        f: ev.fields[f] for f in _SAMPLE_FIELDS if f in ev.fields}


def _noop() -> None:
    return None


def _source(kind: str) -> str:
    return SOURCES.get(kind, "network")
