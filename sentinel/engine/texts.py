"""Translations of rule titles and descriptions: inline ``i18n`` keys and catalog files.

English is each rule's own ``title`` and ``description``. Other languages come
from the rule's ``i18n`` key or from a catalog: every ``*.yaml`` in an
``i18n/`` folder beside a folder of rules (the pack ships ``rules/i18n/id.yaml``)::

    language: id
    rules:
      tally-db-unauthorized-access:
        title: "Basis data penghitungan suara (port {dst_port}) diakses dari {src_ip}, ..."
        description: >-
          ...

A translation shows the same placeholders as the English text, so that no
language hides a fact another shows. A catalog entry for a rule id no rule file
defines is an error at the entry; a rule with no text in a language in use is
reported by ``sentinel check`` (:func:`missing_texts`), while the daemon shows
English for it rather than refusing to start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel.engine.fields import fields_of
from sentinel.i18n import LANGUAGES
from sentinel.located import Checker, Mark, Node, Problem, ProblemError, parse

if TYPE_CHECKING:
    from sentinel.engine.rules import Rule, RuleReader, Template

TextPair = tuple["Template", "Template | None"]
CATALOG_DIR = "i18n"
_NAMES = {"en": "English", "id": "Indonesian"}


def read_texts(reader: RuleReader, node: Node, where: str, english: tuple[Template,
               Template | None], known: set[str], shown: str, lang: str) -> TextPair | None:
    """One language's ``{title, description}`` mapping, compiled and compared with English."""
    c = reader.c
    m = c.mapping(node, where, ("title", "description"), required=("title",))
    if m is None or "title" not in m:
        return None
    title = reader._template(m["title"], f"{where}.title", known, shown, lang)
    desc = None
    if "description" in m:
        desc = reader._template(m["description"], f"{where}.description", known, shown, lang)
    elif english[1] is not None:
        c.error(node.mark, f"{where}: the description is missing; the English rule has one")
        return None
    if "description" in m and english[1] is None:
        c.error(m["description"].mark, f"{where}.description: the English rule has no"
                " description; give one there first, or leave this out")
        return None
    if title is None or ("description" in m and desc is None):
        return None
    for key, got, en in (("title", title, english[0]), ("description", desc, english[1])):
        if got is None or en is None or got.placeholders() == en.placeholders():
            continue
        lacks = sorted(en.placeholders() - got.placeholders())
        more = sorted(got.placeholders() - en.placeholders())
        what = "; ".join(x for x in (
            "missing " + ", ".join(f"{{{n}}}" for n in lacks) if lacks else "",
            "not in English " + ", ".join(f"{{{n}}}" for n in more) if more else "") if x)
        c.error(m[key].mark, f"{where}.{key}: placeholders differ from the English {key}"
                f" ({what}); a translation shows the same fields")
    return title, desc


def catalog_files(rule_paths: Iterable[Path]) -> list[Path]:
    """The catalogs of the folders among ``rule_paths``: their ``i18n/*.yaml``, sorted."""
    out: list[Path] = []
    for p in rule_paths:
        folder = p / CATALOG_DIR
        if p.is_dir() and folder.is_dir():
            out.extend(sorted(f for f in folder.iterdir()
                              if f.suffix in (".yaml", ".yml") and f.is_file()))
    return out


def read_catalog(c: Checker, reader: RuleReader, path: Path, text: str,
                 rules: dict[str, Rule], known_ids: dict[str, Mark],
                 taken: dict[tuple[str, str], Mark]) -> None:
    """Add one catalog's translations to ``rules`` (compiled rules by id).

    ``known_ids`` are every id a rule file defines (faulty or disabled ones
    too); ``taken`` is where each (rule, language) text was first given.
    """
    file = str(path)
    try:
        root = parse(text, file)
    except ProblemError as exc:
        c.problems.extend(exc.problems)
        return
    top = c.mapping(root, "a translation catalog", ("language", "rules"),
                    required=("language", "rules"))
    if top is None or "language" not in top or "rules" not in top:
        return
    others = tuple(x for x in LANGUAGES if x != "en")
    lang = c.choice(top["language"], "language", others)
    entries = top["rules"]
    if lang is None:
        return
    if not isinstance(entries.value, dict):
        if entries.value is not None:
            c.error(entries.mark, "rules maps rule ids to {title, description}")
        return
    for rid, node in entries.value.items():
        kmark = entries.key_marks[rid]
        c.rule_id = rid
        if rid not in known_ids:
            c.error(kmark, f"no rule has the id {rid!r}; a catalog entry translates a rule"
                    " that a rule file defines (check the spelling, or remove the entry)")
        elif (rid, lang) in taken:
            c.error(kmark, f"rule {rid!r} already has its {_NAMES[lang]} text at"
                    f" {taken[rid, lang]}; give it once")
        elif rid in rules:
            rule = rules[rid]
            known = fields_of(rule.kinds)
            got = read_texts(reader, node, f"{rid} ({lang})", (rule.title, rule.description),
                             known, ", ".join(sorted(rule.kinds)), lang)
            taken[rid, lang] = kmark
            if got is not None:
                rule.i18n[lang] = got
        c.rule_id = None


def missing_texts(rules: Sequence[Rule], languages: Iterable[str]) -> list[Problem]:
    """One problem per rule with no text in one of ``languages``, at the rule."""
    out: list[Problem] = []
    for lang in sorted(set(languages) - {"en"}):
        for r in rules:
            if lang not in r.i18n:
                out.append(Problem(r.mark, f"no {_NAMES.get(lang, lang)} ({lang}) title and"
                                   f" description; the config shows {lang}: add them to an"
                                   f" {CATALOG_DIR}/ catalog"
                                   f" beside the rules (language: {lang}) or as"
                                   f" i18n: {{{lang}: {{title: ..., description: ...}}}}"
                                   " on the rule", r.id))
    return out
