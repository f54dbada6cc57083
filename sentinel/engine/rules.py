"""One rule: its YAML shape read and checked, compiled into a :class:`Rule`.

Everything a rule can say is read here except its condition
(:mod:`sentinel.engine.conditions`) and its examples
(:mod:`sentinel.engine.examples`). Every problem goes to the shared
:class:`~sentinel.located.Checker` with the rule's id, so a file reports all
of its faults at once.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import tzinfo
from typing import Any

from sentinel import actors
from sentinel.alert import SEVERITIES
from sentinel.config import Window
from sentinel.engine.conditions import ConditionCompiler, ListDef
from sentinel.engine.examples import Example, read_examples
from sentinel.engine.fields import (
    FLOAT,
    INT,
    LIST,
    FieldError,
    FieldRef,
    fields_of,
    key_getter,
    parse_ref,
    typ_name,
)
from sentinel.engine.matchers import Hint, Match
from sentinel.events import KIND_FIELDS, Event, visible
from sentinel.i18n import LANGUAGES, decimal, human_time
from sentinel.located import Checker, Mark, Node, type_name

RULE_KEYS = ("id", "title", "description", "severity", "tags", "kind", "match", "threshold",
             "change", "schedule", "severity_during", "suppress", "examples", "enabled", "i18n",
             "incident")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Windows:
    """A named schedule as sorted ``[start, end)`` POSIX ranges."""

    def __init__(self, windows: tuple[Window, ...]) -> None:
        spans = sorted((w.start.timestamp(), w.end.timestamp()) for w in windows)
        self._starts = [s for s, _ in spans]
        self._ends = [e for _, e in spans]

    def contains(self, t: float) -> bool:
        i = bisect_right(self._starts, t) - 1
        return i >= 0 and t < self._ends[i]


@dataclass(frozen=True)
class Template:
    """A title with ``{field}`` and ``{field?text}`` placeholders; ``{count}`` too.

    ``{time}`` is shown in ``tz`` (the configured display zone) for people to read,
    and ``{process}`` in the template's language ``lang``.
    """

    parts: tuple[str | tuple[FieldRef | None, str | None], ...]
    text: str
    tz: tzinfo | None = None
    lang: str = "en"

    def placeholders(self) -> frozenset[str]:
        """The field names it shows (``count`` included), for comparing translations."""
        return frozenset("count" if p[0] is None else p[0].text
                         for p in self.parts if not isinstance(p, str))

    def render(self, ev: Event, count: int = 1) -> str:
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            ref, cond_text = p
            if ref is not None and ref.text == "time" and self.tz is not None \
                    and cond_text is None:
                out.append(human_time(ev.time, self.tz))
                continue
            if ref is None:
                value: Any = count
            elif ref.text == "process" and self.lang != "en":
                value = actors.line(ev.fields, self.lang)
            else:
                value = ref.get(ev)
            if cond_text is not None:
                if value:
                    out.append(cond_text)
            # values come from the wire and from file names: their controls and bidi
            # overrides are shown escaped, never rendered, wherever a title is read
            elif isinstance(value, list):
                out.append(visible(",".join(str(x) for x in value)))
            elif isinstance(value, float):
                out.append(decimal(value, self.lang))
            else:
                out.append("-" if value is None else visible(str(value)))
        return "".join(out)


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}?]*)(?:\?([^{}]*))?\}")


@dataclass(frozen=True)
class Threshold:
    at_least: float
    window: float
    group_by: tuple[FieldRef, ...]
    measure: str  # count | distinct | sum
    field: FieldRef | None
    max_groups: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_of", key_getter(self.group_by))

    key_of: Callable[[Event], tuple[Any, ...]] = dc_field(init=False, repr=False, compare=False)


@dataclass(frozen=True)
class Change:
    key: tuple[FieldRef, ...]
    value: FieldRef
    max_keys: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_of", key_getter(self.key))

    key_of: Callable[[Event], tuple[Any, ...]] = dc_field(init=False, repr=False, compare=False)


@dataclass(frozen=True)
class Suppress:
    key: tuple[FieldRef, ...]
    period: float
    max_keys: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_of", key_getter(self.key))

    key_of: Callable[[Event], tuple[Any, ...]] = dc_field(init=False, repr=False, compare=False)


@dataclass(eq=False)
class Rule:
    """A compiled rule. ``fingerprint`` changes whenever anything it depends on does."""

    id: str
    title: Template
    description: Template | None
    severity: str
    tags: tuple[str, ...]
    kinds: frozenset[str]
    match: Match
    hints: list[Hint]
    threshold: Threshold | None
    change: Change | None
    active: Callable[[float], bool] | None
    severity_during: tuple[tuple[Windows, str], ...]
    suppress: Suppress | None
    examples: tuple[Example, ...]
    fingerprint: str
    mark: Mark
    file: str
    order: int = 0
    #: equal for rules that decide alike (kind, match, threshold or change, schedule)
    behaviour: str = ""
    #: The alert's incident key: alerts of several rules about one actor (a scanning
    #: source) share it, so a responder and Alertmanager's grouping see one incident.
    incident: Template | None = None
    #: the site language, which ``render`` shows as the alert's title and description
    language: str = "en"
    #: title and description per language other than English (the rule's own text)
    i18n: dict[str, tuple[Template, Template | None]] = dc_field(default_factory=dict)

    def render(self, ev: Event, count: int = 1) -> tuple[str, dict[str, Any]]:
        """The title in the site language, and the alert fields of its texts:
        ``description``, ``language`` and ``i18n`` (every language's title and description)."""
        texts: dict[str, dict[str, str]] = {}
        for lang, (title, desc) in (("en", (self.title, self.description)),
                                    *self.i18n.items()):
            t = {"title": title.render(ev, count)}
            if desc is not None:
                t["description"] = desc.render(ev, count)
            texts[lang] = t
        # a language with no text yet shows English rather than nothing
        shown = texts.get(self.language, texts["en"])
        extra: dict[str, Any] = {}
        if "description" in shown:
            extra["description"] = shown["description"]
        if self.i18n:
            extra["language"] = self.language
            extra["i18n"] = texts
        return shown["title"], extra

    def severity_at(self, t: float) -> str:
        for windows, sev in self.severity_during:
            if windows.contains(t):
                return sev
        return self.severity


class RuleReader:
    """Reads rule mappings of every file against the lists and schedules in scope."""

    def __init__(self, checker: Checker, lists: dict[str, ListDef],
                 schedules: dict[str, tuple[Window, ...]], language: str = "en",
                 tz: tzinfo | None = None,
                 learned: dict[str, frozenset[str]] | None = None) -> None:
        self.c = checker
        self.language = language
        self.tz = tz
        self.lists = lists
        #: list items the daemon learned rather than read (the server's own addresses,
        #: sentinel.hostinfo): they leave a rule's fingerprint alone, so that an address
        #: arriving or going keeps the rule's thresholds and suppression periods running
        self.learned = learned or {}
        self.schedules = schedules
        self._windows = {name: Windows(w) for name, w in schedules.items()}
        self._used_schedules: set[str] = set()

    def read(self, node: Node, file: str) -> Rule | None:
        c = self.c
        c.rule_id = None
        if isinstance(node.value, dict) and isinstance(rid := node.value.get("id"), Node) \
                and isinstance(rid.value, str):
            c.rule_id = rid.value
        before = len(c.problems)
        self._used_schedules = set()
        m = c.mapping(node, "a rule", RULE_KEYS, required=("id", "title", "severity", "kind",
                                                           "match"))
        if m is None:
            return None
        rule_id = None
        if "id" in m:
            if isinstance(m["id"].value, bool | int | float):
                # YAML reads off, no, yes, 1e3 as non-text
                c.error(m["id"].mark, f"id must be text, got {type_name(m['id'].value)};"
                        " quote it")
            else:
                rule_id = c.string(m["id"], "id")
        if rule_id is not None and not _ID.match(rule_id):
            c.error(m["id"].mark, f"id {rule_id!r} must start with a letter or digit and use"
                    " letters, digits, '_', '-', '.'")
        severity = c.choice(m["severity"], "severity", SEVERITIES) if "severity" in m else None
        tags = tuple(c.strings(m["tags"], "tags") or ()) if "tags" in m else ()
        kinds = self._kinds(m["kind"]) if "kind" in m else None
        enabled = c.boolean(m["enabled"], "enabled") if "enabled" in m else True
        if kinds is None:
            return None
        known = fields_of(kinds)
        shown = ", ".join(sorted(kinds))
        cc = ConditionCompiler(c, self.lists, known, shown)
        cond = cc.compile(m["match"]) if "match" in m else None
        title = self._template(m["title"], "title", known, shown) if "title" in m else None
        desc = (self._template(m["description"], "description", known, shown)
                if "description" in m else None)
        incident = (self._template(m["incident"], "incident", known, shown)
                    if "incident" in m else None)
        threshold = self._threshold(m["threshold"], known, shown) if "threshold" in m else None
        change = self._change(m["change"], known, shown) if "change" in m else None
        if threshold is not None and change is not None:
            c.error(m["change"].mark, "a rule has a threshold or a change, not both")
        active = self._schedule(m["schedule"]) if "schedule" in m else None
        sev_during = self._severity_during(m["severity_during"]) \
            if "severity_during" in m else ()
        suppress = self._suppress(m["suppress"], known, shown) if "suppress" in m else None
        examples = read_examples(c, m["examples"]) if "examples" in m else ()
        i18n = (self.inline_texts(m["i18n"], title, desc, known, shown)
                if "i18n" in m and title is not None else {})
        # a part may fail on a fault already reported (a list entry shared by rules)
        if len(c.problems) > before or enabled is False or not (title and cond):
            return None
        assert rule_id and title and severity and cond
        used = {name: [i for i in self.lists[name].items
                       if i not in self.learned.get(name, ())]
                for name in sorted(cc.used_lists)}
        scheds = {n: [(w.start.isoformat(), w.end.isoformat()) for w in self.schedules[n]]
                  for n in sorted(self._used_schedules)}
        blob = json.dumps({"rule": node.plain(), "lists": used, "schedules": scheds},
                          sort_keys=True, default=str)
        # what decides whether and when it alerts (not how the alert reads): rules
        # alike in this are tested once per event for all of them
        decides = {k: m[k].plain() for k in ("kind", "match", "threshold", "change",
                                              "schedule") if k in m}
        behaviour = json.dumps({"decides": decides, "lists": used, "schedules": scheds},
                               sort_keys=True, default=str)
        return Rule(
            id=rule_id, title=title, description=desc, severity=severity, tags=tags,
            kinds=kinds, match=cond.fn, hints=cond.hints, threshold=threshold, change=change,
            active=active, severity_during=sev_during, suppress=suppress, examples=examples,
            fingerprint=hashlib.sha256(blob.encode()).hexdigest(), mark=node.mark, file=file,
            language=self.language, i18n=i18n, incident=incident,
            behaviour=hashlib.sha256(behaviour.encode()).hexdigest(),
        )

    def inline_texts(self, node: Node, title: Template, desc: Template | None,
                     known: set[str], shown: str) -> dict[str, tuple[Template, Template | None]]:
        """A rule's own ``i18n: {id: {title: ..., description: ...}}``."""
        from sentinel.engine.texts import read_texts

        c = self.c
        if not isinstance(node.value, dict):
            c.error(node.mark, "i18n maps a language to its title and description, e.g."
                    " {id: {title: ..., description: ...}}")
            return {}
        out: dict[str, tuple[Template, Template | None]] = {}
        for lang, item in node.value.items():
            if lang not in LANGUAGES or lang == "en":
                c.error(node.key_marks[lang], f"i18n: {lang!r} is not a language to translate"
                        " into; valid: " + ", ".join(x for x in LANGUAGES if x != "en")
                        + " (English is the rule's own title and description)")
                continue
            got = read_texts(self, item, f"i18n.{lang}", (title, desc), known, shown, lang)
            if got is not None:
                out[lang] = got
        return out

    def _kinds(self, node: Node) -> frozenset[str] | None:
        items = self.c.strings(node, "kind", allow_scalar=True)
        if items is None:
            return None
        out: set[str] = set()
        nodes = node.value if isinstance(node.value, list) else [node]
        for pat, n in zip(items, nodes, strict=True):
            hit = [k for k in KIND_FIELDS if fnmatch.fnmatchcase(k, pat)]
            if not hit:
                self.c.error(n.mark, f"unknown event kind {pat!r}; valid: "
                             + ", ".join(KIND_FIELDS) + " (or a pattern such as fim.*)")
                return None
            out.update(hit)
        return frozenset(out)

    def _ref(self, node: Node, where: str, known: set[str], shown: str) -> FieldRef | None:
        text = self.c.string(node, where)
        if text is None:
            return None
        try:
            return parse_ref(text, known, shown)
        except FieldError as exc:
            self.c.error(node.mark, f"{where}: {exc}")
            return None

    def _refs(self, node: Node, where: str, known: set[str], shown: str,
              ) -> tuple[FieldRef, ...] | None:
        items = self.c.seq(node, where, allow_scalar=True)
        if items is None:
            return None
        refs = [self._ref(n, f"{where}[{i}]" if isinstance(node.value, list) else where,
                          known, shown) for i, n in enumerate(items)]
        if any(r is None for r in refs):
            return None
        return tuple(r for r in refs if r is not None)

    def _template(self, node: Node, where: str, known: set[str], shown: str,
                  lang: str = "en") -> Template | None:
        text = self.c.string(node, where)
        if text is None:
            return None
        parts: list[str | tuple[FieldRef | None, str | None]] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            parts.append(text[pos:m.start()])
            pos = m.end()
            if m.group(0) in ("{{", "}}"):
                parts.append(m.group(0)[0])
                continue
            name = m.group(1).strip()
            if name == "count":
                parts.append((None, m.group(2)))
                continue
            try:
                parts.append((parse_ref(name, known, shown), m.group(2)))
            except FieldError as exc:
                self.c.error(node.mark, f"{where}: placeholder {{{name}}}: {exc}")
                return None
        rest = text[pos:]
        if "{" in rest or "}" in rest:
            self.c.error(node.mark, f"{where}: unbalanced brace; placeholders are {{field}} or"
                         " {field?text shown when the field is true}; write {{ or }} for a"
                         " brace")
            return None
        parts.append(rest)
        return Template(tuple(p for p in parts if p != ""), text, self.tz, lang)

    def _cap(self, m: dict[str, Node], key: str, where: str) -> int | None:
        return self.c.integer(m[key], f"{where}.{key}", 1) if key in m else None

    def _threshold(self, node: Node, known: set[str], shown: str) -> Threshold | None:
        c = self.c
        m = c.mapping(node, "threshold", ("at_least", "window", "group_by", "distinct", "sum",
                                          "max_groups"), required=("at_least", "window"))
        if m is None or "at_least" not in m or "window" not in m:
            return None
        at_least = c.number(m["at_least"], "threshold.at_least")
        if at_least is not None and at_least <= 0:
            c.error(m["at_least"].mark, "threshold.at_least must be greater than zero")
            at_least = None
        window = c.duration(m["window"], "threshold.window")
        group = self._refs(m["group_by"], "threshold.group_by", known, shown) \
            if "group_by" in m else ()
        measure, fld = "count", None
        if "distinct" in m and "sum" in m:
            c.error(m["sum"].mark, "threshold: give distinct or sum, not both")
            return None
        if "distinct" in m:
            measure, fld = "distinct", self._ref(m["distinct"], "threshold.distinct", known, shown)
        elif "sum" in m:
            measure, fld = "sum", self._ref(m["sum"], "threshold.sum", known, shown)
            if fld is not None and fld.type not in (INT, FLOAT):
                c.error(m["sum"].mark, f"threshold.sum adds up numbers; {fld.text} is"
                        f" {typ_name(fld.type)}")
                fld = None
        if fld is not None and fld.type == LIST and measure == "distinct":
            c.error(m["distinct"].mark, "threshold.distinct: a list field cannot be counted;"
                    " give a single-valued field")
            return None
        if at_least is None or window is None or group is None or (measure != "count"
                                                                    and fld is None):
            return None
        if measure != "sum" and at_least != int(at_least):
            c.error(m["at_least"].mark, "threshold.at_least counts events; give a whole number")
            return None
        return Threshold(at_least, window, group, measure, fld,
                         self._cap(m, "max_groups", "threshold"))

    def _change(self, node: Node, known: set[str], shown: str) -> Change | None:
        m = self.c.mapping(node, "change", ("key", "value", "max_keys"),
                           required=("key", "value"))
        if m is None or "key" not in m or "value" not in m:
            return None
        key = self._refs(m["key"], "change.key", known, shown)
        value = self._ref(m["value"], "change.value", known, shown)
        if key is None or value is None:
            return None
        return Change(key, value, self._cap(m, "max_keys", "change"))

    def _suppress(self, node: Node, known: set[str], shown: str) -> Suppress | None:
        m = self.c.mapping(node, "suppress", ("key", "period", "max_keys"),
                           required=("period",))
        if m is None or "period" not in m:
            return None
        key = self._refs(m["key"], "suppress.key", known, shown) if "key" in m else ()
        period = self.c.duration(m["period"], "suppress.period")
        if key is None or period is None:
            return None
        return Suppress(key, period, self._cap(m, "max_keys", "suppress"))

    def _schedule_name(self, node: Node, where: str) -> Windows | None:
        name = self.c.string(node, where)
        if name is None:
            return None
        if name not in self._windows:
            valid = ", ".join(sorted(self._windows)) or "none defined in the config's schedules:"
            self.c.error(node.mark, f"{where}: unknown schedule {name!r}; valid: {valid}")
            return None
        self._used_schedules.add(name)
        return self._windows[name]

    def _schedule(self, node: Node) -> Callable[[float], bool] | None:
        m = self.c.mapping(node, "schedule", ("during", "outside"))
        if m is None:
            return None
        if len(m) != 1:
            self.c.error(node.mark, "schedule takes exactly one of during: NAME or outside: NAME")
            return None
        ((key, n),) = m.items()
        w = self._schedule_name(n, f"schedule.{key}")
        if w is None:
            return None
        if key == "during":
            return w.contains
        return lambda t: not w.contains(t)

    def _severity_during(self, node: Node) -> tuple[tuple[Windows, str], ...]:
        c = self.c
        if not isinstance(node.value, dict) or not node.value:
            c.error(node.mark, "severity_during maps schedule names to a severity, e.g."
                    " {counting: critical}")
            return ()
        out = []
        for name, sev_node in node.value.items():
            w = self._schedule_name(Node(name, node.key_marks[name]), "severity_during")
            sev = c.choice(sev_node, f"severity_during.{name}", SEVERITIES)
            if w is not None and sev is not None:
                out.append((w, sev))
        return tuple(out)
