"""From a socket's inode to the process holding it, through ``/proc``.

No kernel interface maps a socket inode to a process: ``ss -p`` and ``lsof``
read every ``/proc/<pid>/fd/*`` link looking for ``socket:[INODE]``, and so
does :class:`ProcIndex`, with three limits on its cost:

- every socket link it reads is remembered (inode -> pid, fd), so a socket of
  a process already read is found again with one ``readlink`` to confirm it;
- a search stops as soon as every wanted inode is found, visiting in turn the
  processes that held looked-up sockets before (most recent first) and the
  others (newest first): a connection is most often made by a process just
  started, or by one that made the previous ones. "Newest" counts down from the
  pid the kernel gave last (``/proc/loadavg``), so once pids have wrapped past
  ``pid_max`` a new process with a small pid is still among the first seen;
- the reads it may do are a budget refilled at one full pass per
  ``scan_interval`` (100 ms): a flood of connections costs at most one full
  pass of ``/proc`` per 100 ms, however many there are.

Another user's ``/proc/<pid>/fd`` needs ``CAP_SYS_PTRACE`` (and under the
unit's ``ProtectProc=invisible`` such processes are not listed at all): what
could not be read is counted, so the caller can say why an owner is unknown.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import zip_longest

from sentinel.events import escaped_name

#: Socket links remembered before the map is cleared (bounds memory).
CACHE_SIZE = 65536
#: Processes that held looked-up sockets, visited first.
HOT_SIZE = 256
#: Bytes of a command line kept (a hostile one can be megabytes).
COMMAND_MAX = 4096
#: /proc/<pid>/loginuid and sessionid when unset
UNSET = 0xFFFFFFFF
#: reads a full pass is granted at least
MIN_BUDGET = 2000.0
#: bit of CAP_SYS_PTRACE in the capability sets of /proc/self/status
CAP_SYS_PTRACE = 19


@dataclass
class Search:
    """The result of one :meth:`ProcIndex.find`: ``found`` inode -> (pid, fd);
    ``hidden`` processes whose fds could not be read; ``stopped`` why the pass
    ended before it saw every process ("deadline", "budget"), None when whole."""

    found: dict[int, tuple[int, int]]
    hidden: int = 0
    stopped: str | None = None


def can_see_other_users() -> bool:
    """Whether this process holds CAP_SYS_PTRACE (reads other users' /proc/<pid>/fd)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_PTRACE & 1)
    except (OSError, ValueError):
        pass
    return False


class ProcIndex:
    """Finds the processes holding socket inodes; one thread uses it."""

    def __init__(self, proc: str = "/proc", scan_interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.proc = proc
        self.scan_interval = scan_interval
        self.clock = clock
        self._links: dict[int, tuple[int, int]] = {}
        self._hot: OrderedDict[int, None] = OrderedDict()
        # reads allowed (listdir or readlink); one full pass is ``_full`` reads, estimated
        # from the processes listed and the reads each took so far
        self._per_pid = 8.0
        self._full = MIN_BUDGET
        self._tokens = self._full
        self._refilled = clock()
        #: full passes of /proc done (a pass that saw every process)
        self.full_scans = 0

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self._full, self._tokens
                           + (now - self._refilled) / self.scan_interval * self._full)
        self._refilled = now

    def _confirm(self, inode: int, pid: int, fd: int) -> bool:
        try:
            return os.readlink(f"{self.proc}/{pid}/fd/{fd}") == f"socket:[{inode}]"
        except OSError:
            return False

    def owner(self, inode: int) -> tuple[int, int] | None:
        """The remembered (pid, fd) of ``inode`` when it still holds it."""
        got = self._links.get(inode)
        if got is not None and self._confirm(inode, *got):
            return got
        return None

    def note(self, pid: int) -> None:
        """``pid`` held a looked-up socket: visit it first next time."""
        self._hot[pid] = None
        self._hot.move_to_end(pid)
        while len(self._hot) > HOT_SIZE:
            self._hot.popitem(last=False)

    def find(self, inodes: Iterable[int], deadline: float) -> Search:
        """Search /proc for the holders of ``inodes`` until found, the budget spent
        or ``deadline`` (of ``clock``) passed."""
        out = Search({})
        want: set[int] = set()
        for ino in inodes:
            got = self.owner(ino)
            if got is not None:
                out.found[ino] = got
            else:
                want.add(ino)
        if not want:
            return out
        self._refill()
        try:
            listed = [int(n) for n in os.listdir(self.proc) if n.isdigit()]
        except OSError:
            out.stopped = "budget"
            return out
        listed.sort(reverse=True)
        last = _last_pid(self.proc)
        if last is not None:  # pids wrap at pid_max: the newest are those below the last
            listed = [p for p in listed if p <= last] + [p for p in listed if p > last]
        self._full = max(MIN_BUDGET, len(listed) * self._per_pid + 1)
        present = set(listed)
        hot = [p for p in reversed(self._hot) if p in present]
        new = [p for p in listed if p not in self._hot]
        # one of each in turn: a process that made the last connections, the newest
        # other: a connection from either is found within twice its own rank
        order = [p for pair in zip_longest(hot, new) for p in pair if p is not None]
        cost = 1
        visited = 0
        for pid in order:
            if self._tokens - cost <= 0:
                out.stopped = "budget"
                break
            if self.clock() > deadline:
                out.stopped = "deadline"
                break
            cost += self._read_fds(pid, want, out, deadline)
            visited += 1
            if out.stopped:
                break
            if not want:
                break
        else:
            self.full_scans += 1
        if visited >= 16:  # enough processes to learn their fds per process from
            self._per_pid = (cost - 1) / visited
        self._tokens -= cost
        return out

    def _read_fds(self, pid: int, want: set[int], out: Search, deadline: float) -> int:
        """Read one process's socket links into the map; returns the reads done. A
        process with thousands of descriptors is cut at ``deadline``."""
        base = f"{self.proc}/{pid}/fd"
        try:
            fds = os.listdir(base)
        except PermissionError:
            out.hidden += 1
            return 1
        except OSError:  # gone, or a kernel thread
            return 1
        if len(self._links) > CACHE_SIZE:
            self._links.clear()
        for i, name in enumerate(fds):
            if i & 255 == 255 and self.clock() > deadline:
                out.stopped = "deadline"
                return 1 + i
            try:
                target = os.readlink(f"{base}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                ino = int(target[8:-1])
                self._links[ino] = (pid, int(name))
                if ino in want:
                    want.discard(ino)
                    out.found[ino] = (pid, int(name))
        return 1 + len(fds)


@dataclass(frozen=True)
class ProcessInfo:
    """What /proc says of a process, read in one go."""

    pid: int
    ppid: int | None
    uid: int | None
    exe: bytes | None
    command: str | None
    login_uid: int | None
    session: int | None


def _last_pid(proc: str) -> int | None:
    """The pid the kernel gave last (the fifth field of ``loadavg``)."""
    try:
        return int(_read(f"{proc}/loadavg").split()[4])
    except (OSError, ValueError, IndexError):
        return None


def _read(path: str, limit: int = 8192) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _id(path: str) -> int | None:
    try:
        v = int(_read(path, 32))
    except (OSError, ValueError):
        return None
    return None if v == UNSET else v


def _text(raw: bytes) -> str:
    """:func:`escaped_name` of a command line; plain UTF-8 without backslashes (nearly
    every one) is its own text, without the per-character walk."""
    if b"\\" not in raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return escaped_name(raw)


def read_process(proc: str, pid: int) -> ProcessInfo | None:
    """The process ``pid``, or None when it is gone (or cannot be read at all)."""
    base = f"{proc}/{pid}"
    try:
        status = _read(f"{base}/status", 4096)
    except OSError:
        return None
    ppid = uid = None
    for line in status.splitlines():
        if line.startswith(b"PPid:"):
            ppid = int(line.split()[1])
        elif line.startswith(b"Uid:"):
            uid = int(line.split()[1])  # the real uid, as the audit records name it
    try:
        exe: bytes | None = os.readlink(f"{base}/exe".encode())
    except OSError:
        exe = None  # a kernel thread, or another user's without CAP_SYS_PTRACE
    try:
        raw = _read(f"{base}/cmdline", COMMAND_MAX + 1)
    except OSError:
        raw = b""
    cut = len(raw) > COMMAND_MAX
    raw = raw[:COMMAND_MAX].rstrip(b"\0").replace(b"\0", b" ")
    command = _text(raw) + ("..." if cut else "") if raw else None
    return ProcessInfo(pid, ppid, uid, exe, command, _id(f"{base}/loginuid"),
                       _id(f"{base}/sessionid"))
