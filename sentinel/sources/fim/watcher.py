"""inotify watches over the scope, on watchdog's inotify reader.

watchdog's reader thread (:class:`InotifyFD`) reads the kernel's event buffer
and calls back per watch. Two things it does not report are read here at that
boundary:

- ``IN_Q_OVERFLOW``: the kernel dropped events. The flag is taken from each
  raw buffer in :meth:`_InotifyFD.read_events` before anything else sees it.
- ``ENOSPC``/``EMFILE`` when adding a watch: watchdog's recursive helper
  swallows failures below a root, so :class:`Watcher` adds every watch
  itself and reports the tree it could not finish.

:class:`Watcher` keeps one watch per directory that needs one (every
directory of a recursive entry, each configured directory, and the parent of
every configured path, so a root being replaced or deleted is seen). New
directories are watched from the reader thread, before their creation event
is passed on, so the worker's scan of a new directory cannot miss a file.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from typing import NamedTuple

from watchdog.observers.inotify_c import (
    DEFAULT_EVENT_BUFFER_SIZE,
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchCallback,
    WatchDescriptor,
)

from sentinel import logs
from sentinel.sources.fim.scan import Scope

_log = logs.get("fim")
C = InotifyConstants

#: IN_MODIFY is taken only to notice a writer that never closes; content is
#: hashed on IN_CLOSE_WRITE. IN_OPEN/IN_CLOSE_NOWRITE are left out so sentinel's
#: own reads cause no events.
MASK = Mask(
    C.IN_CREATE | C.IN_DELETE | C.IN_DELETE_SELF | C.IN_MOVED_FROM | C.IN_MOVED_TO
    | C.IN_ATTRIB | C.IN_CLOSE_WRITE | C.IN_MODIFY | C.IN_DONT_FOLLOW | C.IN_EXCL_UNLINK
    | C.IN_ONLYDIR
)
LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


class Raw(NamedTuple):
    """One inotify event with its full path; ``seen`` when it was read (monotonic)."""

    mask: int
    cookie: int
    path: str
    seen: float


class _InotifyFD(InotifyFD):
    """watchdog's inotify reader, reporting overflow and watch-limit errors."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self.name = "fim-inotify"
        self._on_overflow = on_overflow

    def read_events(self, *, event_buffer_size: int = DEFAULT_EVENT_BUFFER_SIZE,
                    ) -> list[InotifyEvent]:
        buf = self._read_event_buffer(event_buffer_size)
        out: list[InotifyEvent] = []
        for wd, mask, cookie, name in self._parse_event_buffer(buf):
            if mask & C.IN_Q_OVERFLOW:
                self._on_overflow()
            elif wd != -1:
                out.append(InotifyEvent(wd, mask, cookie, name))
        return out

    def add_callback(self, path: bytes, mask: Mask, callback: WatchCallback,
                     id_: CallbackId) -> WatchDescriptor:
        wd = super().add_callback(path, mask, callback, id_)
        if wd == -1:
            # watchdog passes EACCES through as watch -1; undo and say so.
            self.remove_callbacks([(wd, id_)])
            raise PermissionError(errno.EACCES, "cannot watch", os.fsdecode(path))
        return wd


class Watcher(WatchCallback):
    """Watches over a :class:`Scope`, passing each event to ``sink`` as a :class:`Raw`."""

    def __init__(self, scope: Scope, sink: Callable[[Raw], None],
                 on_overflow: Callable[[], None], on_limit: Callable[[str, OSError], None],
                 clock: Callable[[], float], on_error: Callable[[str], None]) -> None:
        self._scope = scope
        self._on_error = on_error
        self._sink = sink
        self._clock = clock
        self._lock = threading.RLock()
        self._path_of: dict[int, str] = {}
        self._wd_of: dict[str, int] = {}
        self._ino_of: dict[int, int] = {}
        self._dir_moves: dict[int, str] = {}
        self._id = CallbackId(id(self))
        self._on_limit = on_limit
        self._fd = _InotifyFD(on_overflow)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start reading, then add every watch (so the kernel queue drains from the start)."""
        self._fd.start()
        self.ensure()

    def stop(self) -> None:
        self._fd.stop()
        self._fd.join(timeout=5)

    def alive(self) -> bool:
        return self._fd.is_alive()

    @property
    def watch_count(self) -> int:
        with self._lock:
            return len(self._wd_of)

    # -- watches ----------------------------------------------------------

    def ensure(self, under: str | None = None) -> bool:
        """(Re-)add watches for the whole scope, or below ``under``; False at a limit.

        Every tree is tried, so each one left short of watches is reported.
        """
        ok = True
        if under is None:
            for d in sorted(self._scope.parent_dirs()):
                if (err := self._add(d)) is not None:
                    self._on_limit(d, err)
                    ok = False
            roots = sorted(self._scope.roots)
        else:
            roots = [under]
        for r in roots:
            ok = self.add_tree(r) and ok
        return ok

    def add_tree(self, top: str) -> bool:
        """Watch ``top`` and every directory below it that the scope wants watched.

        At the inotify limit, stops and reports ``top`` (what lies below it is
        no longer sure to be watched) to ``on_limit``; returns False.
        """
        stack = [top]
        while stack:
            d = stack.pop()
            if not self._scope.wants_watch(d):
                continue
            if (err := self._add(d)) is not None:
                self._on_limit(top, err)
                return False
            try:
                with os.scandir(d) as it:
                    for de in it:
                        if de.is_dir(follow_symlinks=False):
                            stack.append(de.path)
            except OSError:
                continue
        return True

    def _add(self, d: str) -> OSError | None:
        """Watch one directory; the error if the inotify limit stopped it."""
        try:
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode):
                return None
            with self._lock:
                known = self._wd_of.get(d)
                if known is not None and self._ino_of.get(known) == st.st_ino:
                    return None  # already watched (the same directory, not a replacement)
                wd = self._fd.add_callback(os.fsencode(d), MASK, self, self._id)
                old = self._path_of.get(wd)
                if old is not None and old != d and self._wd_of.get(old) == wd:
                    del self._wd_of[old]
                self._path_of[wd] = d
                self._wd_of[d] = wd
                self._ino_of[wd] = st.st_ino
        except OSError as exc:
            if exc.errno in LIMIT_ERRNOS:
                return exc
            # Vanished or unreadable between listing and watching: its parent's
            # events (or the next rescan) report it.
        return None

    def drop_tree(self, top: str) -> None:
        """Stop watching ``top`` and below (moved out of the scope)."""
        prefix = top.rstrip("/") + "/"
        with self._lock:
            gone = [(p, wd) for p, wd in self._wd_of.items()
                    if p == top or p.startswith(prefix)]
            for p, wd in gone:
                del self._wd_of[p]
                self._path_of.pop(wd, None)
                self._ino_of.pop(wd, None)
        if gone:
            self._fd.remove_callbacks([(WatchDescriptor(wd), self._id) for _, wd in gone])

    def drop_stale(self, top: str) -> None:
        """Drop watches at or below ``top`` whose directory is no longer there.

        A directory moved out of the scope keeps its watches (the kernel
        follows the inode); a new directory made since under the same name has
        a different inode and keeps its own.
        """
        prefix = top.rstrip("/") + "/"
        with self._lock:
            items = [(p, wd) for p, wd in self._wd_of.items() if p == top or p.startswith(prefix)]
        stale = []
        for p, wd in items:
            try:
                ino = os.lstat(p).st_ino
            except OSError:
                ino = None
            if ino != self._ino_of.get(wd):
                stale.append((p, wd))
        with self._lock:
            for p, wd in stale:
                if self._wd_of.get(p) == wd:
                    del self._wd_of[p]
                self._path_of.pop(wd, None)
                self._ino_of.pop(wd, None)
        if stale:
            self._fd.remove_callbacks([(WatchDescriptor(wd), self._id) for _, wd in stale])

    def _rename(self, src: str, dst: str) -> None:
        prefix = src.rstrip("/") + "/"
        moved = [(p, wd) for p, wd in self._wd_of.items() if p == src or p.startswith(prefix)]
        for p, _ in moved:
            del self._wd_of[p]
        for p, wd in moved:
            q = dst + p[len(src):]
            self._wd_of[q] = wd
            self._path_of[wd] = q

    # -- watchdog callbacks (reader thread) -----------------------------------

    def on_event(self, event: InotifyEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            # The reader thread must not die: the failure is counted and logged
            # (with its traceback) by on_error, and the next rescan covers it.
            self._on_error(repr(event))

    def _on_event(self, event: InotifyEvent) -> None:
        with self._lock:
            base = self._path_of.get(event.wd)
        if base is None:
            return
        mask = event.mask
        path = os.path.join(base, os.fsdecode(event.name)) if event.name else base
        if mask & C.IN_ISDIR:
            self._directory_event(mask, event.cookie, path)
        self._sink(Raw(mask, event.cookie, path, self._clock()))

    def _directory_event(self, mask: int, cookie: int, path: str) -> None:
        if mask & C.IN_MOVED_FROM:
            with self._lock:
                if len(self._dir_moves) > 1024:
                    self._dir_moves.clear()
                self._dir_moves[cookie] = path
        elif mask & C.IN_MOVED_TO:
            with self._lock:
                src = self._dir_moves.pop(cookie, None)
                if src is not None:
                    self._rename(src, path)
            if self._scope.wants_watch(path):
                self.add_tree(path)
            else:
                self.drop_tree(path)
        elif mask & C.IN_CREATE and self._scope.wants_watch(path):
            self.add_tree(path)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        with self._lock:
            p = self._path_of.pop(wd, None)
            self._ino_of.pop(wd, None)
            if p is not None and self._wd_of.get(p) == wd:
                del self._wd_of[p]

    def on_queue_overflow(self) -> None:
        """Unused: overflow is taken from the raw buffer in :class:`_InotifyFD`."""
