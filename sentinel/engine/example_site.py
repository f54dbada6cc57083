"""The example site: the facts a rule pack's examples were written for.

A rule's examples prove its logic. They name addresses, ports and MACs of
some site, so they can only be run against that site's lists: run against an
operator's own lists, every example of the pack would fail at any other site,
and a valid site could not start. A rule file whose top-level key is
``example_site`` (the pack ships ``rules/example-site.yaml``, the reference
site of CONTRACT §7) holds those facts::

    example_site:
      lists: {tally_server: [10.20.0.10], ...}
      schedules: {counting: [{start: ..., end: ...}]}

The examples of every rule file loaded from the same folder run against it:
its lists and schedules, plus the lists rule files define (universal facts
such as ``non_routable_nets``); never the config's lists. A rule file may say
``examples_against: site`` to have its own examples run against the config's
lists and schedules instead — the choice for an operator's own rules, written
for their own site. A rule file in a folder without an example site runs its
examples against the config, as there are no other facts to run them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sentinel.config import Window
from sentinel.engine.conditions import ListDef
from sentinel.engine.lists import LIST_NAME
from sentinel.located import Checker, Node, Problem, type_name

SITE_KEY = "example_site"
AGAINST_KEY = "examples_against"
#: ``examples_against`` values: the folder's example site (the default), or the config
AGAINST = ("example_site", "site")


@dataclass(frozen=True)
class ExampleSite:
    """Lists and schedules that a folder's rule examples are evaluated with."""

    file: Path
    lists: dict[str, ListDef]
    schedules: dict[str, tuple[Window, ...]]


def read_example_site(c: Checker, node: Node, path: Path) -> ExampleSite | None:
    """The ``example_site:`` mapping of the rule file ``path``; problems go to ``c``."""
    from sentinel.config_reader import ConfigReader  # the one reader of schedule windows

    m = c.mapping(node, SITE_KEY, ("lists", "schedules"))
    if m is None:
        return None
    lists: dict[str, ListDef] = {}
    if "lists" in m:
        lnode = m["lists"]
        if not isinstance(lnode.value, dict):
            c.error(lnode.mark, f"{SITE_KEY}.lists must map list names to lists of values,"
                    f" got {type_name(lnode.value)}")
        else:
            for name, item in lnode.value.items():
                got = _one_list(c, name, item, lnode)
                if got is not None:
                    lists[name] = got
    schedules: dict[str, tuple[Window, ...]] = {}
    if "schedules" in m:
        reader = ConfigReader(path)
        reader.c = c
        schedules = reader._schedules(m["schedules"])  # the config's window syntax
    return ExampleSite(path, lists, schedules)


def _one_list(c: Checker, name: str, item: Node, parent: Node) -> ListDef | None:
    kmark = parent.key_marks[name]
    if not LIST_NAME.match(name):
        c.error(kmark, f"list name {name!r} is not valid; use letters, digits, '_', '-', '.'")
        return None
    items = c.seq(item, f"{SITE_KEY}.lists.{name}")
    if items is None:
        return None
    bad = [n for n in items if isinstance(n.value, dict | list) or n.value is None]
    for n in bad:
        c.error(n.mark, f"{SITE_KEY}.lists.{name}: items are single values (addresses,"
                " networks, ports, names, \"ip:port\"), got " + type_name(n.value))
    if bad:
        return None
    return ListDef(name, tuple(n.value for n in items), kmark, tuple(n.mark for n in items))


def example_lists(site: ExampleSite, file_lists: dict[str, ListDef],
                  c: Checker) -> dict[str, ListDef]:
    """The lists in scope for examples: the rule files' own lists and the site's."""
    out = dict(file_lists)
    for name, ld in site.lists.items():
        if name in out:
            c.error(ld.mark, f"list {name!r} is already defined at {out[name].mark}; an"
                    " example site holds site facts, rule files hold the universal ones")
            continue
        out[name] = ld
    return out


def against_site(problem: Problem, site: ExampleSite) -> Problem:
    """``problem``, found compiling a rule with the example site's facts, saying so."""
    return Problem(problem.mark, f"{problem.message} (with the facts of the example site"
                   f" {site.file})", problem.rule_id)
