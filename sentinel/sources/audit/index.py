"""Recent audit records by path and by inode, and the actor fields of one record.

A FIM event is matched to the newest record that names its path (joined to
the writer's CWD) or, failing that, its inode: a name given relative to a
directory descriptor (``unlinkat(dirfd, ...)``, as ``rm -r`` does) is not
joined to the right folder by the kernel's record, but the inode it logs is
the file's. Records are kept ``keep`` seconds, ``max_records`` at most.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sentinel import actors
from sentinel.actors import Users
from sentinel.events import name_fields, name_text
from sentinel.sources.audit.records import UNSET, Record

#: The kernel's "attribute change" class of system calls (asm-generic/audit_change_attr.h:
#: chmod, chown, the xattr calls, utime*), by audit arch: x86_64, aarch64.
ATTR_SYSCALLS: dict[int, frozenset[int]] = {
    0xC000003E: frozenset((90, 91, 92, 93, 94, 132, 188, 189, 190, 197, 198, 199, 235, 260,
                           261, 268, 280, 452, 463, 466)),
    0xC00000B7: frozenset((5, 6, 7, 14, 15, 16, 52, 53, 54, 55, 88, 452, 463, 466)),
}


@dataclass(frozen=True)
class Fit:
    """Which records can stand for a kind of change: the PATH item types (a PARENT
    item is the folder), and whether the call must (True) or must not (False) be an
    attribute change: a chmod's record is not the writer's of a content change."""

    nametypes: frozenset[str]
    attr: bool | None = None

    def accepts(self, nametype: str, rec: Record) -> bool:
        if nametype not in self.nametypes:
            return False
        if self.attr is None or rec.arch not in ATTR_SYSCALLS or rec.syscall is None:
            return True
        return (rec.syscall in ATTR_SYSCALLS[rec.arch]) == self.attr


_ANY = Fit(frozenset(("NORMAL", "CREATE", "DELETE", "UNKNOWN")))
FITS: dict[str, Fit] = {
    "fim.created": Fit(frozenset(("CREATE", "NORMAL"))),
    "fim.deleted": Fit(frozenset(("DELETE",))),
    "fim.modified": Fit(frozenset(("NORMAL", "CREATE", "DELETE", "UNKNOWN")), attr=False),
    "fim.attrib": Fit(frozenset(("NORMAL", "CREATE", "UNKNOWN")), attr=True),
    "fim.moved": Fit(frozenset(("CREATE", "DELETE"))),
}
_Entry = tuple[str, int | None, Record]


class RecordIndex:
    """Thread-safe: the reader adds, the FIM worker looks up (and may wait)."""

    def __init__(self, keep: float = 60.0, max_records: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keep = keep
        self.max_records = max_records
        self._clock = clock
        self._cond = threading.Condition()
        self._order: deque[tuple[float, Record]] = deque()
        self._by_name: dict[bytes, list[_Entry]] = {}
        self._by_inode: dict[int, list[_Entry]] = {}
        self.added = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, rec: Record) -> None:
        now = self._clock()
        with self._cond:
            self._order.append((now, rec))
            for item in rec.paths:
                if item.nametype == "PARENT":
                    continue
                entry = (item.nametype, item.inode, rec)
                self._by_name.setdefault(item.name, []).append(entry)
                if item.inode is not None:
                    self._by_inode.setdefault(item.inode, []).append(entry)
            self.added += 1
            self._evict(now)
            self._cond.notify_all()

    def _evict(self, now: float) -> None:
        while self._order and (len(self._order) > self.max_records
                               or now - self._order[0][0] > self.keep):
            _, old = self._order.popleft()
            for item in old.paths:
                _drop(self._by_name, item.name, old)
                if item.inode is not None:
                    _drop(self._by_inode, item.inode, old)

    def find(self, names: Iterable[bytes], inodes: Iterable[int],
             fits: Fit = _ANY) -> Record | None:
        """The newest record naming one of ``names`` as one of the ``fits`` item
        types, else the newest with one of ``inodes``."""
        with self._cond:
            return self._find(list(names), list(inodes), fits)

    def wait_for(self, names: Iterable[bytes], inodes: Iterable[int],
                 timeout: float, fits: Fit = _ANY,
                 after: int = -1) -> Record | None:
        """:meth:`find`, waiting up to ``timeout`` for the record to arrive (one with a
        serial above ``after``)."""
        ns, ins = list(names), list(inodes)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._find(ns, ins, fits)
                if found is not None and found.serial <= after:
                    found = None
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._cond.wait(left)

    def _find(self, names: list[bytes], inodes: list[int],
              fits: Fit) -> Record | None:
        same = frozenset(inodes)
        return (_newest([self._by_name.get(k, []) for k in names], fits, same)
                or _newest([self._by_inode.get(k, []) for k in inodes], fits, same))


def _newest(lists: list[list[_Entry]], fits: Fit,
            inodes: frozenset[int]) -> Record | None:
    # A name must also have the file's inode when both are known: a name the kernel
    # logged relative to a directory descriptor is joined to the wrong folder
    best: Record | None = None
    for entries in lists:
        for nametype, inode, rec in reversed(entries):
            if fits.accepts(nametype, rec) and (not inodes or inode is None
                                                or inode in inodes):
                if best is None or rec.serial > best.serial:
                    best = rec
                break
    return best


def _drop(table: dict[Any, list[_Entry]], key: Any, rec: Record) -> None:
    recs = table.get(key)
    if recs is None:
        return
    recs[:] = [e for e in recs if e[2] is not rec]
    if not recs:
        del table[key]


def _set(v: int | None) -> int | None:
    return None if v is None or v == UNSET else v


def actor_fields(rec: Record, users: Users) -> dict[str, Any]:
    """ACTOR_FIELDS of the process behind ``rec`` (``process_via`` "audit")."""
    login = _set(rec.auid)
    command = rec.command()
    exe = name_fields(rec.exe, "process_exe")
    user, login_user = users.name(rec.uid), users.name(login)
    text = None if command is None else name_text(command)
    return {
        "process_pid": rec.pid,
        "process_ppid": rec.ppid,
        **exe,
        "process_command": text,
        "process_uid": rec.uid,
        "process_user": user,
        "process_login_uid": login,
        "process_login_user": login_user,
        "process_session": _set(rec.ses),
        "process_via": "audit",
        "process_unknown": None,
        "process": actors.known(exe["process_exe"] or text, rec.pid, rec.uid, user, login,
                                login_user),
    }


#: why a live change has no writer (one of the reasons people read, translated in i18n)
NO_RECORD = ("no audit record (a process started before audit was enabled, or a change"
             " through a descriptor opened earlier)")
#: the start of why none is looked up while attribution is down (what is wrong follows)
UNAVAILABLE = "attribution unavailable: "
#: why a change found by ``sentinel baseline verify`` has none
FOUND_BY_VERIFY = "found by sentinel baseline verify"


def unknown_fields(why: str) -> dict[str, Any]:
    """ACTOR_FIELDS of an event whose process is not known, and why."""
    return {
        "process_pid": None, "process_ppid": None, "process_exe": None,
        "process_exe_b64": None, "process_command": None, "process_uid": None,
        "process_user": None, "process_login_uid": None, "process_login_user": None,
        "process_session": None, "process_via": None, "process_unknown": why,
        "process": actors.unknown(why),
    }
