"""Loading rule files into a :class:`RuleSet`, with every problem of every file.

``load_rules(config)`` reads each file or folder of ``rules.paths`` (folders:
their ``*.yaml`` and ``*.yml`` files, sorted), gathers named lists from the
config and from every rule file first (so a rule may use a list defined in any
file), then reads every rule. It raises one :class:`ProblemError` listing all
problems, or returns a rule set ready for an :class:`~sentinel.engine.Engine`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import tzinfo
from pathlib import Path

from sentinel.config import Config, Window
from sentinel.engine.conditions import ListDef
from sentinel.engine.example_site import (
    AGAINST,
    AGAINST_KEY,
    SITE_KEY,
    ExampleSite,
    against_site,
    example_lists,
    read_example_site,
)
from sentinel.engine.index import RuleIndex
from sentinel.engine.rules import Rule, RuleReader
from sentinel.engine.texts import catalog_files, missing_texts, read_catalog
from sentinel.located import (
    Checker,
    Mark,
    Node,
    Problem,
    ProblemError,
    parse,
    read_bounded,
    type_name,
)

FILE_KEYS = ("lists", "rules", SITE_KEY, AGAINST_KEY)


class RuleSet:
    """Compiled rules, indexed, with the files they came from. Immutable once built."""

    def __init__(self, rules: Sequence[Rule], files: Sequence[Path] = (),
                 file_bytes: Sequence[bytes] = (),
                 example_rules: dict[str, tuple[Rule | None, str]] | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        #: rule id -> (the rule compiled with the facts its examples were written for, or
        #: None for the rule as it runs; where those facts come from)
        self.example_rules = dict(example_rules or {})
        self.files: tuple[Path, ...] = tuple(files)
        self._digest = _digest(self.files, file_bytes)
        self.index = RuleIndex(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def digest(self) -> str:
        """sha256 over the loaded rule files' bytes, in path order."""
        return self._digest

    def example_count(self) -> int:
        return sum(len(r.examples) for r in self.rules)

    def check_texts(self, languages: Iterable[str]) -> list[Problem]:
        """One problem per rule lacking a title in one of ``languages`` (English is its own)."""
        return missing_texts(self.rules, languages)


def _digest(files: Sequence[Path], data: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for path, blob in sorted(zip(files, data, strict=False), key=lambda pb: str(pb[0])):
        h.update(str(path).encode() + b"\0")
        h.update(hashlib.sha256(blob).digest())
    return h.hexdigest()


def rule_files(paths: Sequence[Path], problems: list[Problem], origin: str) -> list[Path]:
    """The files named by ``paths``: files as given, folders' *.yaml/*.yml sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir()
                              if f.suffix in (".yaml", ".yml") and f.is_file()))
        elif p.exists():
            out.append(p)
        else:
            problems.append(Problem(Mark(origin, 1, 1), f"rules path {p} does not exist; give a"
                                    " rule file or a folder of *.yaml rule files"))
    return out


def load_rules(config: Config) -> RuleSet:
    """Load and compile every rule file of ``config``; raise ProblemError with all problems."""
    from sentinel.hostinfo import GATEWAY_LIST, SELF_LIST

    learned = {SELF_LIST: frozenset(str(a) for a in config.learned_addresses),
               GATEWAY_LIST: frozenset(str(a) for a in config.learned_gateways)}
    return load_rule_files(rule_files_of(config), config.lists, config.list_marks,
                           config.schedules, origin=str(config.source),
                           language=config.language, tz=config.display_zone(),
                           catalogs=catalog_files(config.rules.paths),
                           item_marks=config.list_item_marks, learned=learned)


def rule_files_of(config: Config) -> list[Path]:
    problems: list[Problem] = []
    files = rule_files(config.rules.paths, problems, str(config.source))
    if problems:
        raise ProblemError(problems)
    return files


def load_rule_files(
    files: Sequence[Path],
    lists: dict[str, tuple[object, ...]] | None = None,
    list_marks: dict[str, Mark] | None = None,
    schedules: dict[str, tuple[Window, ...]] | None = None,
    origin: str = "config",
    language: str = "en",
    tz: tzinfo | None = None,
    catalogs: Sequence[Path] = (),
    item_marks: dict[str, tuple[Mark, ...]] | None = None,
    learned: dict[str, frozenset[str]] | None = None,
) -> RuleSet:
    """Load ``files`` with config ``lists`` and ``schedules``; the core of :func:`load_rules`.

    Titles render in ``language`` (English when a rule has no text in it) with
    ``{time}`` in ``tz``; ``catalogs`` are translation files (:mod:`.texts`);
    ``learned`` list items (the daemon's own addresses) leave fingerprints alone.
    """
    c = Checker()
    defs: dict[str, ListDef] = {}
    for name, items in (lists or {}).items():
        mark = (list_marks or {}).get(name, Mark(origin, 1, 1))
        defs[name] = ListDef(name, tuple(items), mark, (item_marks or {}).get(name, ()))
    config_names = set(defs)
    sites: dict[Path, ExampleSite] = {}
    against: dict[Path, str] = {}
    parsed: list[tuple[Path, bytes, dict[str, Node]]] = []
    for path in files:
        got = _read(path, c)
        if got is None:
            continue
        blob, root = got
        if root.value is None:
            parsed.append((path, blob, {}))
            continue
        top = c.mapping(root, "a rule file", FILE_KEYS)
        if top is None:
            continue
        if "lists" in top:
            _file_lists(c, top["lists"], defs)
        if SITE_KEY in top:
            _site(c, top[SITE_KEY], path, sites)
        if AGAINST_KEY in top and (choice := c.choice(top[AGAINST_KEY], AGAINST_KEY, AGAINST)):
            against[path] = choice
        parsed.append((path, blob, top))
    reader = RuleReader(c, defs, schedules or {}, language, tz, learned)
    rules: list[Rule] = []
    seen: dict[str, Mark] = {}
    for path, _, top in parsed:
        if "rules" not in top:
            continue
        rule_nodes = c.seq(top["rules"], "rules") or []
        for node in rule_nodes:
            id_node = node.value.get("id") if isinstance(node.value, dict) else None
            if id_node is not None and isinstance(id_node.value, str):
                rid = id_node.value
                if rid in seen:
                    c.rule_id = rid
                    c.error(id_node.mark, f"duplicate rule id {rid!r}; first defined at"
                            f" {seen[rid]}")
                    c.rule_id = None
                    continue
                # a rule with faults still claims its id, so its twin is reported too
                seen[rid] = id_node.mark
            rule = reader.read(node, str(path))
            c.rule_id = None
            if rule is not None:
                rule.order = len(rules)
                rules.append(rule)
    file_defs = {k: v for k, v in defs.items() if k not in config_names}
    example_rules = _example_rules(c, parsed, sites, against, file_defs)
    cat_files = _catalogs(c, reader, catalogs, rules, seen)
    c.raise_if_any()
    # catalogs are part of the digest: what people read is part of what was loaded
    return RuleSet(rules, [p for p, _, _ in parsed] + [p for p, _ in cat_files],
                   [b for _, b, _ in parsed] + [b for _, b in cat_files], example_rules)


def _site(c: Checker, node: Node, path: Path, sites: dict[Path, ExampleSite]) -> None:
    site = read_example_site(c, node, path)
    if site is None:
        return
    if path.parent in sites:
        c.error(node.mark, f"a second example site in {path.parent}; the first is"
                f" {sites[path.parent].file} (one per folder)")
        return
    sites[path.parent] = site


def _example_rules(c: Checker, parsed: Sequence[tuple[Path, bytes, dict[str, Node]]],
                   sites: dict[Path, ExampleSite], against: dict[Path, str],
                   file_defs: dict[str, ListDef]) -> dict[str, tuple[Rule | None, str]]:
    """Compile again, with its folder's example site, each rule whose examples use it."""
    out: dict[str, tuple[Rule | None, str]] = {}
    for path, _, top in parsed:
        site = sites.get(path.parent)
        if "rules" not in top:
            continue
        if site is None or against.get(path) == "site":
            why = ("the file says examples_against: site" if site is not None
                   else "its folder has no example site")
            for node in top["rules"].value if isinstance(top["rules"].value, list) else ():
                rid = node.value.get("id") if isinstance(node.value, dict) else None
                if rid is not None and isinstance(rid.value, str):
                    out[rid.value] = (None, f"the config's lists: {why}")
            continue
        # a separate checker: a fault of the rule itself is already reported once
        ec = Checker()
        reader = RuleReader(ec, example_lists(site, file_defs, ec), site.schedules)
        for node in (ec.seq(top["rules"], "rules") or []):
            rule = reader.read(node, str(path))
            ec.rule_id = None
            if rule is not None:
                out[rule.id] = (rule, f"the example site {site.file}")
        known = {(p.mark, p.message) for p in c.problems}
        c.problems.extend(against_site(p, site) for p in ec.problems
                          if (p.mark, p.message) not in known)
    return out


def _catalogs(c: Checker, reader: RuleReader, paths: Sequence[Path], rules: list[Rule],
              seen: dict[str, Mark]) -> list[tuple[Path, bytes]]:
    by_id = {r.id: r for r in rules}
    taken = {(r.id, lang): r.mark for r in rules for lang in r.i18n}
    out: list[tuple[Path, bytes]] = []
    for path in paths:
        got = _read_text(path, c)
        if got is not None:
            read_catalog(c, reader, path, got[1], by_id, seen, taken)
            out.append((path, got[0]))
    return out


def _read_text(path: Path, c: Checker) -> tuple[bytes, str] | None:
    file = str(path)
    try:
        # regular files of bounded size only: /dev/zero or a FIFO must not hang a reload
        blob = read_bounded(path)
    except ProblemError as exc:
        c.problems.extend(exc.problems)
        return None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        c.error(Mark(file, 1, 1), f"not UTF-8 text (byte {exc.start})")
        return None
    return blob, text


def _read(path: Path, c: Checker) -> tuple[bytes, Node] | None:
    got = _read_text(path, c)
    if got is None:
        return None
    blob, text = got
    file = str(path)
    try:
        return blob, parse(text, file)
    except ProblemError as exc:
        c.problems.extend(exc.problems)
        return None


def _file_lists(c: Checker, node: Node, defs: dict[str, ListDef]) -> None:
    if not isinstance(node.value, dict):
        c.error(node.mark, "lists must map list names to lists of values")
        return
    for name, item in node.value.items():
        kmark = node.key_marks[name]
        if name in defs:
            c.error(kmark, f"list {name!r} is already defined at {defs[name].mark}; list names"
                    " are shared by the config and every rule file")
            continue
        items = c.seq(item, f"lists.{name}")
        if items is None:
            continue
        bad = [n for n in items if isinstance(n.value, dict | list) or n.value is None]
        for n in bad:
            c.error(n.mark, f"lists.{name}: items are single values (addresses, networks,"
                    " ports, names, \"ip:port\"), got " + type_name(n.value))
        if not bad:
            defs[name] = ListDef(name, tuple(n.value for n in items), kmark)
