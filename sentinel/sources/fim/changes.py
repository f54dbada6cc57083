"""Differences between records, and the ``fim.*`` events that describe them.

Event fields (CONTRACT §3, ``KIND_FIELDS``): every listed key is present, None
where it does not apply. Modes are four octal digits of the permission bits
(``"0755"``, ``"4755"``); the file type is separate (``type_before/after``).
``changed`` lists, in this order, which of content, mode, uid, gid, size,
inode, type, target differ; it is empty for created and deleted. The kind is
``fim.modified`` when content, size, inode, type or link target changed, else
``fim.attrib`` (mode, owner or group only). ``is_executable``, ``is_setuid``
and ``is_setgid`` describe the file after the change (before, for a deletion)
and are true only for regular files. mtime alone is not a change.

Names (``path``, ``dest_path``, ``link_target_*``) are bytes to Linux: each
is text plus a ``_b64`` twin, set only when the name is not valid UTF-8
(:func:`sentinel.events.name_fields`), so any name reaches the journal and
webhooks whole.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from typing import Any, NamedTuple

from sentinel.events import ACTOR_FIELDS, Event, name_fields
from sentinel.sources.fim.baseline import FileRecord

CHANGE_FIELDS = ("content", "mode", "uid", "gid", "size", "inode", "type", "target")
_MODIFYING = frozenset(("content", "size", "inode", "type", "target"))


class Change(NamedTuple):
    """One reportable difference. ``dest`` is set for moves."""

    kind: str
    path: str
    before: FileRecord | None
    after: FileRecord | None
    changed: tuple[str, ...] = ()
    dest: str | None = None


def changed_fields(b: FileRecord, a: FileRecord) -> tuple[str, ...]:
    diffs = (
        b.sha256 != a.sha256, b.mode != a.mode, b.uid != a.uid, b.gid != a.gid,
        b.size != a.size, b.inode != a.inode, b.type != a.type, b.target != a.target,
    )
    return tuple(name for name, d in zip(CHANGE_FIELDS, diffs, strict=True) if d)


def kind_of(changed: tuple[str, ...]) -> str | None:
    if not changed:
        return None
    return "fim.modified" if _MODIFYING.intersection(changed) else "fim.attrib"


def compare(path: str, before: FileRecord | None, after: FileRecord | None) -> Change | None:
    """The change from ``before`` to ``after`` at one path, or None if nothing reportable."""
    if before is None and after is None:
        return None
    if before is None:
        return Change("fim.created", path, None, after)
    if after is None:
        return Change("fim.deleted", path, before, None)
    changed = changed_fields(before, after)
    kind = kind_of(changed)
    return Change(kind, path, before, after, changed) if kind else None


def moved(before: FileRecord, after: FileRecord) -> Change:
    return Change("fim.moved", before.path, before, after, changed_fields(before, after),
                  after.path)


def _same_object(b: FileRecord, a: FileRecord) -> bool:
    if b.inode != a.inode or b.type != a.type:
        return False
    if b.type == "file":
        return b.sha256 is not None and b.sha256 == a.sha256
    return b.target == a.target


def diff(old: Mapping[str, FileRecord], new: Mapping[str, FileRecord]) -> list[Change]:
    """Every change from ``old`` to ``new``, sorted by path.

    A path gone from ``old`` whose inode (with the same type, and the same
    content or link target) now sits at a new path is one ``fim.moved``.
    """
    out: list[Change] = []
    gone = [p for p in old if p not in new]
    fresh = {p for p in new if p not in old}
    for p, a in new.items():
        b = old.get(p)
        if b is not None and (c := compare(p, b, a)) is not None:
            out.append(c)
    by_inode: dict[int, list[str]] = {}
    for p in sorted(fresh):
        by_inode.setdefault(new[p].inode, []).append(p)
    for p in sorted(gone):
        b = old[p]
        match = next((q for q in by_inode.get(b.inode, ()) if q in fresh
                      and _same_object(b, new[q])), None)
        if match is not None:
            fresh.discard(match)
            out.append(moved(b, new[match]))
        else:
            out.append(Change("fim.deleted", p, b, None))
    out.extend(Change("fim.created", p, None, new[p]) for p in fresh)
    out.sort(key=lambda c: c.path)
    return out


def _mode(r: FileRecord | None) -> str | None:
    return None if r is None else f"{r.mode:04o}"


def fields(change: Change, tags: tuple[str, ...], offline: bool) -> dict[str, Any]:
    """The event fields of one change, every ``fim.*`` key present."""
    b, a = change.before, change.after
    state = a if a is not None else b
    is_file = state is not None and state.type == "file"
    mode = state.mode if state is not None else 0
    return {
        **name_fields(change.path, "path"),
        **name_fields(change.dest, "dest_path"),
        "path_tags": list(tags),
        "changed": list(change.changed),
        "sha256_before": b.sha256 if b else None,
        "sha256_after": a.sha256 if a else None,
        "mode_before": _mode(b),
        "mode_after": _mode(a),
        "uid_before": b.uid if b else None,
        "uid_after": a.uid if a else None,
        "gid_before": b.gid if b else None,
        "gid_after": a.gid if a else None,
        "size_before": b.size if b else None,
        "size_after": a.size if a else None,
        "type_before": b.type if b else None,
        "type_after": a.type if a else None,
        **name_fields(b.target if b else None, "link_target_before"),
        **name_fields(a.target if a else None, "link_target_after"),
        "is_executable": is_file and bool(mode & 0o111),
        "is_setuid": is_file and bool(mode & stat.S_ISUID),
        "is_setgid": is_file and bool(mode & stat.S_ISGID),
        "offline": offline,
        # who made the change: filled by attribution when it is on, else all None
        **dict.fromkeys(ACTOR_FIELDS),
    }


def make_event(change: Change, tags: tuple[str, ...], *, host: str, time: float,
               offline: bool) -> Event:
    return Event(change.kind, time, host, "fim", fields(change, tags, offline))
