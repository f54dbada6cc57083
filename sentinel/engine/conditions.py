"""Conditions: the ``match:`` language, compiled once into plain Python closures.

A condition is a mapping (all of its entries hold) or a list (any of its items
holds). An entry is a field test (``dst_port: 5432``, ``src_ip: {cidr: ...}``)
or a combinator (``all_of``, ``any_of``, ``not``). On a list field
(``path_tags``, ``changed``) a test holds when it holds for any item; the
``not_*`` operators are the exact negation of their positive form, so a missing
field makes ``in`` false and ``not_in`` true.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.engine.fields import (
    BOOL,
    FLOAT,
    INT,
    IP,
    LIST,
    LOW_CARDINALITY,
    STR,
    FieldError,
    FieldRef,
    parse_ref,
    typ_name,
)
from sentinel.engine.lists import (
    LIST_NAME,
    NUMBER,
    SHAPE_VALID,
    TEXT,
    TRUTH,
    WHOLE,
    ValueSet,
    build_value_set,
    domain_matcher,
    item_problem,
    normalize_domain,
    shape_of,
)
from sentinel.engine.matchers import Cond, Hint, Test, all_, any_, field_fn
from sentinel.located import Checker, Mark, Node, type_name

NEGATED = {"not_equals": "equals", "not_in": "in", "not_cidr": "cidr",
           "not_domain_in": "domain_in"}
TEXT_OPS = ("glob", "regex", "startswith", "endswith", "contains")
NUMBER_OPS = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}
OPERATORS = ("equals", "not_equals", "in", "not_in", "cidr", "not_cidr", "domain_in",
             "not_domain_in", *TEXT_OPS, *NUMBER_OPS, "exists")
COMBINATORS = ("all_of", "any_of", "not")


@dataclass(frozen=True)
class ListDef:
    """A named list as written: where it stands and its raw items."""

    name: str
    items: tuple[Any, ...]
    mark: Mark
    #: where each item stands (empty: report at ``mark``)
    item_marks: tuple[Mark, ...] = ()

    def item_mark(self, i: int) -> Mark:
        return self.item_marks[i] if i < len(self.item_marks) else self.mark


def _suggest(word: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class ConditionCompiler:
    """Compiles the condition of one rule, recording problems on ``checker``."""

    def __init__(self, checker: Checker, lists: dict[str, ListDef], known: set[str],
                 kinds_shown: str) -> None:
        self.c = checker
        self.lists = lists
        self.known = known
        self.kinds_shown = kinds_shown
        self.used_lists: set[str] = set()

    # -- structure ---------------------------------------------------------

    def compile(self, node: Node, where: str = "match") -> Cond | None:
        v = node.value
        if isinstance(v, list):
            if not v:
                self.c.error(node.mark, f"{where}: an empty list matches nothing; give one or"
                             " more conditions")
                return None
            parts = [self.compile(item, where) for item in v]
            if any(p is None for p in parts):
                return None
            return any_([p for p in parts if p is not None])
        if not isinstance(v, dict):
            self.c.error(node.mark, f"{where} must be a mapping of field to value (all must hold)"
                         f" or a list of such mappings (any must hold), got {type_name(v)}")
            return None
        if not v:
            self.c.error(node.mark, f"{where}: an empty mapping; give at least one field test")
            return None
        parts2: list[Cond] = []
        ok = True
        for key, child in v.items():
            kmark = node.key_marks[key]
            got = (self._combinator(key, child, where) if key in COMBINATORS
                   else self._field(key, kmark, child))
            if got is None:
                ok = False
            else:
                parts2.append(got)
        return all_(parts2) if ok else None

    def _combinator(self, key: str, node: Node, where: str) -> Cond | None:
        if key == "not":
            inner = self.compile(node, f"{where}.not")
            if inner is None:
                return None
            fn = inner.fn
            return Cond(lambda ev: not fn(ev))
        if not isinstance(node.value, list):
            self.c.error(node.mark, f"{key} takes a list of conditions, got"
                         f" {type_name(node.value)}")
            return None
        if not node.value:
            self.c.error(node.mark, f"{key}: an empty list; give one or more conditions")
            return None
        parts = [self.compile(item, f"{where}.{key}") for item in node.value]
        if any(p is None for p in parts):
            return None
        conds = [p for p in parts if p is not None]
        return all_(conds) if key == "all_of" else any_(conds)

    def _field(self, key: str, kmark: Mark, node: Node) -> Cond | None:
        try:
            ref = parse_ref(key, self.known, self.kinds_shown)
        except FieldError as exc:
            extra = _suggest(key.split("|", maxsplit=1)[0], sorted(self.known))
            self.c.error(kmark, f"{exc}{extra}" if "unknown field" in str(exc) else str(exc))
            return None
        v = node.value
        if v is None:
            self.c.error(node.mark, f"no value for field {key!r}; to test that it is present"
                         " write {exists: true}")
            return None
        if isinstance(v, dict):
            if not v:
                self.c.error(node.mark, f"{key}: an empty mapping; valid operators: "
                             + ", ".join(OPERATORS))
                return None
            parts: list[Cond] = []
            ok = True
            for op, arg in v.items():
                got = self._op(ref, op, node.key_marks[op], arg)
                if got is None:
                    ok = False
                else:
                    parts.append(got)
            return all_(parts) if ok else None
        if isinstance(v, str) and v.startswith("$"):
            return self._op(ref, "in", node.mark, node)
        return self._op(ref, "equals", node.mark, node)

    # -- operators -------------------------------------------------------

    def _op(self, ref: FieldRef, op: str, opmark: Mark, arg: Node) -> Cond | None:
        if op not in OPERATORS:
            self.c.error(opmark, f"unknown operator {op!r}{_suggest(op, OPERATORS)}; valid: "
                         + ", ".join(OPERATORS))
            return None
        if op == "exists":
            want = self.c.boolean(arg, f"{ref.text}: exists")
            if want is None:
                return None
            get = ref.get
            return Cond(lambda ev: (get(ev) is not None) is want)
        positive = NEGATED.get(op, op)
        negate = op in NEGATED
        elem = STR if ref.type == LIST else ref.type
        test: Test | None
        vs: ValueSet | None = None
        domains: tuple[Test, frozenset[str]] | None = None
        if positive in ("equals", "in"):
            vs = self._values(ref, op, arg, elem, named_only=positive == "in")
            test = vs.has if vs else None
        elif positive == "cidr":
            vs = self._cidr(ref, op, arg)
            test = vs.has if vs else None
        elif positive == "domain_in":
            domains = self._domains(ref, op, arg)
            test = domains[0] if domains else None
        elif op in TEXT_OPS:
            test = self._text(ref, op, arg)
        else:
            test = self._number(ref, op, arg)
        if test is None:
            return None
        cond = Cond(field_fn(ref.get, test, negate, ref.type == LIST))
        if negate:
            return cond
        # a transformed or joined reference is indexed by its text, read by its getter
        key = ref.plain or ref.text
        reader = None if ref.plain else ref.get
        if vs is not None and vs.indexable:
            low = ref.plain in LOW_CARDINALITY
            if vs.nets:
                cond.hints.append(Hint(key, frozenset(), vs.nets, 2, get=reader))
            elif vs.exact:
                cond.hints.append(Hint(key, vs.exact, (), 1 if low else 3, get=reader))
        elif positive == "domain_in" and domains:
            cond.hints.append(Hint(key, frozenset(), (), 3, domains[1], get=reader))
        return cond

    def _items(self, op: str, ref: FieldRef, arg: Node, *, bare_name: bool,
               ) -> tuple[list[Any], list[Node] | None, str | None] | None:
        """The argument as (items, their nodes if inline, list name if named)."""
        v = arg.value
        if isinstance(v, list):
            bad = [n for n in v if isinstance(n.value, dict | list) or n.value is None]
            for n in bad:
                self.c.error(n.mark, f"{ref.text}: {op}: list items must be single values, got"
                             f" {type_name(n.value)}")
            if bad:
                return None
            return [n.value for n in v], list(v), None
        if isinstance(v, str) and (v.startswith("$") or bare_name):
            name = v[1:] if v.startswith("$") else v
            ld = self.lists.get(name)
            if ld is None:
                valid = ", ".join(sorted(self.lists)) or "none defined"
                self.c.error(arg.mark, f"{ref.text}: {op}: unknown list {name!r}"
                             f"{_suggest(name, sorted(self.lists))}: define it under `lists:` (what"
                             " each list of the pack holds: rules/README.md, 'The election rule"
                             f" pack'); valid lists: {valid}")
                return None
            self.used_lists.add(name)
            if not self._check_named(ref, op, ld):
                return None
            return list(ld.items), None, name
        if isinstance(v, dict) or v is None:
            self.c.error(arg.mark, f"{ref.text}: {op} takes a value, a list of values or a"
                         f" named list ($name), got {type_name(v)}")
            return None
        return [v], [arg], None

    def _check_named(self, ref: FieldRef, op: str, ld: ListDef) -> bool:
        """Report, at the item, every entry of ``ld`` that does not fit this use.

        The same entry used the same way by several rules is reported once.
        """
        if NEGATED.get(op, op) not in ("equals", "in", "cidr", "domain_in"):
            return True  # text and number tests take any text
        shape = shape_of(ref, NEGATED.get(op, op))
        if shape == TEXT:
            return True  # text fields take any text; a number there is reported by _values
        ok = True
        for i, item in enumerate(ld.items):
            why = item_problem(shape, item)
            if why is None:
                continue
            ok = False
            msg = (f"lists.{ld.name}[{i}]: {why}; the list is used as {ref.text}: {op}, which"
                   f" takes {SHAPE_VALID[shape]}")
            mark = ld.item_mark(i)
            if not any(p.mark == mark and p.message == msg for p in self.c.problems):
                self.c.error(mark, msg)
        return ok

    def _check_inline(self, ref: FieldRef, op: str, nodes: list[Node]) -> bool:
        shape = shape_of(ref, NEGATED.get(op, op))
        ok = True
        for n in nodes:
            why = item_problem(shape, n.value)
            if why is not None and shape not in (TEXT, WHOLE, NUMBER, TRUTH):
                self.c.error(n.mark, f"{ref.text}: {op}: {why}; valid: {SHAPE_VALID[shape]}")
                ok = False
        return ok

    def _values(self, ref: FieldRef, op: str, arg: Node, elem: str,
                named_only: bool) -> ValueSet | None:
        if named_only and not isinstance(arg.value, list | str):
            self.c.error(arg.mark, f"{ref.text}: {op} takes a list or the name of a list, got"
                         f" {type_name(arg.value)}")
            return None
        got = self._items(op, ref, arg, bare_name=named_only)
        if got is None:
            return None
        items, nodes, name = got
        vs, bad = build_value_set(items, elem)
        if nodes is not None:
            for i in bad:
                self.c.error(nodes[i].mark, _mismatch(ref, elem, nodes[i].value))
            if bad:
                return None
            return vs if self._check_inline(ref, op, nodes) else None
        if bad and shape_of(ref, NEGATED.get(op, op)) == TEXT and name is not None:
            ld = self.lists[name]
            for i in bad:
                msg = f"lists.{name}[{i}]: {_mismatch(ref, elem, items[i])}"
                if not any(p.message == msg for p in self.c.problems):
                    self.c.error(ld.item_mark(i), msg)
        if vs.size == 0:
            self.c.error(arg.mark, f"{ref.text}: {op}: list {name!r} has no items that fit"
                         f" {ref.text} ({_expect(elem)})")
            return None
        return vs

    def _cidr(self, ref: FieldRef, op: str, arg: Node) -> ValueSet | None:
        if ref.type != IP:
            self.c.error(arg.mark, f"{ref.text}: {op} needs an address field (src_ip, dst_ip,"
                         f" sender_ip, target_ip); {ref.text} is {typ_name(ref.type)}")
            return None
        # a text that cannot be a list name is a network written in place, so that
        # "10.0.0.0/33" is reported as a bad network, not as an unknown list
        literal = isinstance(arg.value, str) and not LIST_NAME.match(arg.value)
        got = self._items(op, ref, arg, bare_name=not literal)
        if got is None:
            return None
        items, nodes, name = got
        vs, _ = build_value_set(items, IP)
        if nodes is not None:
            if not self._check_inline(ref, op, nodes):
                return None
        elif vs.size == 0:
            self.c.error(arg.mark, f"{ref.text}: {op}: list {name!r} holds no addresses or"
                         " networks")
            return None
        return vs

    def _domains(self, ref: FieldRef, op: str, arg: Node,
                 ) -> tuple[Test, frozenset[str]] | None:
        """The test, and the names as the index files them."""
        if ref.type not in (STR, LIST):
            self.c.error(arg.mark, f"{ref.text}: {op} needs a text field such as qname;"
                         f" {ref.text} is {typ_name(ref.type)}")
            return None
        got = self._items(op, ref, arg, bare_name=True)
        if got is None:
            return None
        items, nodes, name = got
        names = [i for i in items if isinstance(i, str) and i.strip(".* ")]
        if nodes is not None:
            if not self._check_inline(ref, op, nodes):
                return None
        elif not names:
            self.c.error(arg.mark, f"{ref.text}: {op}: list {name!r} holds no domain names")
            return None
        return domain_matcher(names), frozenset(normalize_domain(n) for n in names)

    def _text(self, ref: FieldRef, op: str, arg: Node) -> Test | None:
        if ref.type not in (STR, IP, LIST):
            hint = "; use equals, in, gt or lt for numbers" if ref.type in (INT, FLOAT) else ""
            self.c.error(arg.mark, f"{ref.text}: {op} compares text; {ref.text} is"
                         f" {typ_name(ref.type)}{hint}")
            return None
        got = self._items(op, ref, arg, bare_name=False)
        if got is None:
            return None
        items, nodes, name = got
        strs: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                strs.append(item)
            elif nodes is not None:
                self.c.error(nodes[i].mark, f"{ref.text}: {op} takes text, got"
                             f" {type_name(item)}; quote it")
                return None
        if not strs:
            self.c.error(arg.mark, f"{ref.text}: {op}: list {name!r} holds no text items")
            return None
        if op == "startswith":
            pre = tuple(strs)
            return lambda v: str(v).startswith(pre)
        if op == "endswith":
            suf = tuple(strs)
            return lambda v: str(v).endswith(suf)
        if op == "contains":
            subs = tuple(strs)
            return lambda v: any(s in str(v) for s in subs)
        if op == "glob":
            rx = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in strs), re.S)
            return lambda v: rx.match(str(v)) is not None
        for i, pat in enumerate(strs):
            try:
                re.compile(pat)
            except re.error as exc:
                mark = nodes[i].mark if nodes is not None else arg.mark
                self.c.error(mark, f"{ref.text}: regex: bad regular expression {pat!r}: {exc}")
                return None
        rx2 = re.compile("|".join(f"(?:{p})" for p in strs))
        return lambda v: rx2.search(str(v)) is not None

    def _number(self, ref: FieldRef, op: str, arg: Node) -> Test | None:
        if ref.type not in (INT, FLOAT):
            hint = f"; to compare its length use {ref.text}|len" if ref.type in (STR, LIST) else ""
            self.c.error(arg.mark, f"{ref.text}: {op} compares numbers; {ref.text} is"
                         f" {typ_name(ref.type)}{hint}")
            return None
        limit = self.c.number(arg, f"{ref.text}: {op}")
        if limit is None:
            return None
        cmp = NUMBER_OPS[op]

        def test(v: Any) -> bool:
            if isinstance(v, bool):
                return False
            try:
                return cmp(float(v), limit)
            except (TypeError, ValueError):
                return False
        return test


def _expect(t: str) -> str:
    return {INT: "numbers", FLOAT: "numbers", BOOL: "true or false",
            IP: "addresses or networks", STR: "text", LIST: "text"}[t]


def _mismatch(ref: FieldRef, elem: str, value: Any) -> str:
    shown = repr(value) if not isinstance(value, str) else f"{value!r}"
    if elem == STR and isinstance(value, int | float | bool):
        # YAML turns 0644 into 420 and off into false: show what it read
        return (f"{ref.text} is text, but YAML read {type_name(value)} ({shown}) here;"
                " quote the value as written, e.g. \"0644\"")
    return f"{ref.text} holds {_expect(elem)}; {shown} is not one"
