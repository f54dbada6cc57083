"""The mount table: a mount on or above a watched path is an alert and a rescan now.

A bind mount over a watched file (or over one of its folders) shows other
content at the same path without a single inotify event: the watcher would
only see it at the hourly rescan. ``/proc/self/mountinfo`` signals every
change of the mount table to ``poll`` (POLLPRI and POLLERR, see proc(5)), so a
thread waits on it, compares the table with the last one it read, and for
every new mount point that is a watched path, lies above one (hides it) or
lies inside a recursively watched folder, raises ``sentinel-mount-over-watched``
and asks FIM to rescan the paths it covers. A mount that goes away is
rescanned too (what it hid is visible again), without an alert.

Only this process's mount namespace is seen: a mount made in another one
(``unshare -m``) changes nothing for sentinel, and is out of its sight.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sentinel import logs

log = logs.get("selfwatch")

MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    id: int
    point: str
    fs_type: str
    source: str
    root: str  # the folder of the source file system mounted here (bind mounts)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as \\ooo
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> dict[int, Mount]:
    """Mount id -> mount, from the text of a mountinfo file."""
    out: dict[int, Mount] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 5 or len(r) < 2:
            continue
        with contextlib.suppress(ValueError):
            out[int(f[0])] = Mount(int(f[0]), _unescape(f[4]), r[0], _unescape(r[1]),
                                   _unescape(f[3]))
    return out


def _under(path: str, folder: str) -> bool:
    return folder in (path, "/") or path.startswith(folder.rstrip("/") + "/")


def affected(mount: Mount, watched: list[tuple[str, bool]]) -> list[str]:
    """The watched paths a mount covers, as the paths to rescan.

    ``watched`` is (path, recursive). A mount at or above a watched path hides
    it (rescan the watched path); one inside a recursively watched folder
    hides part of it (rescan the mount point).
    """
    out = []
    for path, recursive in watched:
        if _under(path, mount.point):
            out.append(path)
        elif recursive and _under(mount.point, path):
            out.append(mount.point)
    return sorted(set(out))


class MountWatch:
    """A named thread waiting on the mount table; calls ``on_change(new, gone)``."""

    def __init__(self, on_change: Callable[[list[Mount], list[Mount]], None],
                 path: str = MOUNTINFO) -> None:
        self.on_change = on_change
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._table: dict[int, Mount] = {}
        self.started = False

    def start(self) -> None:
        self.started = True
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._table = self._read()
        except OSError as exc:
            log.error("cannot_watch_mount_table",
                      detail="a mount over a watched path is found only at the next full rescan",
                      path=self.path, error=exc.strerror)
            return
        self._thread = threading.Thread(target=self._run, name="mount-watch", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> dict[int, Mount]:
        chunks = []
        os.lseek(self._fd, 0, os.SEEK_SET)
        while chunk := os.read(self._fd, 65536):
            chunks.append(chunk)
        return parse_mountinfo(b"".join(chunks).decode("utf-8", "surrogateescape"))

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLPRI | select.POLLERR)
        while not self._stop.is_set():
            # a bounded wait, so that stop() is seen within half a second
            if not poller.poll(500):
                continue
            try:
                table = self._read()
            except OSError as exc:
                log.error("mount_table_unreadable", error=exc.strerror)
                self._stop.wait(1.0)
                continue
            new = [m for i, m in table.items() if i not in self._table]
            gone = [m for i, m in self._table.items() if i not in table]
            self._table = table
            if new or gone:
                try:
                    self.on_change(new, gone)
                except Exception:
                    log.exception("mount_change_handling_failed")
