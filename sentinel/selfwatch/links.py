"""Watched files with more than one hard link: polled, since a write through the other
link raises no event in the watched folder.

inotify reports a write to the watches of the inode and of the folder the
writer named it through. A file of the watched tree that also has a name
outside it (``ln /opt/tally/bin/tally /tmp/t``) can be rewritten through
``/tmp/t`` without an event here: only the next full rescan would see it. So
the watched tree is walked (stat only, no hashing) every ``REWALK`` for
regular files with ``st_nlink > 1``, and those few are stat-ed every
``EVERY``; a changed inode, size, mtime, ctime or link count asks FIM to
rescan that file at once.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable

from sentinel import logs
from sentinel.config import Config

log = logs.get("selfwatch")

#: How often the hard-linked files are stat-ed.
EVERY = 2.0
#: How often the watched tree is walked for files that gained a second link.
REWALK = 300.0

Signature = tuple[int, int, int, int, int]


def _sig(st: os.stat_result) -> Signature:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)


def linked_files(config: Config) -> dict[str, Signature]:
    """Every watched regular file with more than one hard link, and its signature."""
    from sentinel.sources.fim.scan import Scope

    out = {}
    for path, st in Scope.from_config(config).walk():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            out[path] = _sig(st)
    return out


class LinkWatch:
    """A named thread; ``rescan(path)`` is called for a hard-linked file that changed."""

    def __init__(self, config: Config, rescan: Callable[[str], None],
                 every: float = EVERY, rewalk: float = REWALK) -> None:
        self.config = config
        self.rescan = rescan
        self.every = every
        self.rewalk = rewalk
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._files: dict[str, Signature] = {}
        self._walked = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="link-watch", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        next_walk = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_walk:
                    next_walk = time.monotonic() + self.rewalk
                    self._walk()
                self._poll()
            except Exception:
                # the loop must not die: the next round tries again
                log.exception("link_watch_failed")
            self._stop.wait(self.every)

    def _walk(self) -> None:
        first = self._walked is False
        found = linked_files(self.config)
        for path in found.keys() - self._files.keys():
            log.info("watched_file_hard_linked",
                     detail="polled for writes through the others", path=path, links=found[path][4])
            if not first:
                # it may have been written through its other name before this walk (the
                # first walk follows FIM's own start-up rescan)
                self.rescan(path)
        self._files = found
        self._walked = True

    def _poll(self) -> None:
        for path, old in list(self._files.items()):
            try:
                new = _sig(os.lstat(path))
            except OSError:
                del self._files[path]
                self.rescan(path)
                continue
            if new != old:
                self._files[path] = new
                self.rescan(path)
