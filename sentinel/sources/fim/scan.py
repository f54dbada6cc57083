"""What is watched (:class:`Scope`), walking it, and taking file snapshots.

A snapshot is a :class:`FileRecord` of a path as it is now: ``lstat`` for
everything, ``readlink`` for symlinks (never followed), and sha256 of regular
files, streamed through ``hashlib.file_digest``. The record of a hashed file
comes from ``fstat`` of the very descriptor that was hashed, so its attributes
and its hash always describe the same inode.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sentinel.config import Config, FimPath
from sentinel.sources.fim.baseline import FileRecord

_TYPES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket", stat.S_IFCHR: "char", stat.S_IFBLK: "block",
}
_OPEN_FLAGS = (os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
_NOATIME = getattr(os, "O_NOATIME", 0)
#: Files up to this size are read in one call; larger ones are streamed.
_SMALL = 1 << 16


def file_type(mode: int) -> str:
    """file, dir, symlink, fifo, socket, char or block (``other`` if unknown)."""
    return _TYPES.get(stat.S_IFMT(mode), "other")


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    pats = list(patterns)
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in pats)) if pats else None


def harmless(mode: int) -> bool:
    """What an exclude may hide: a regular file without execute, setuid or setgid bits."""
    return stat.S_ISREG(mode) and not mode & 0o6111


class Scope:
    """The watched paths of ``fim.paths``, with ``fim.exclude`` applied.

    A pattern without ``/`` matches any single name below a configured path
    (a path below an excluded directory name is excluded too); a pattern with
    ``/`` matches the whole path. Configured paths themselves are never
    excluded. ``skip`` paths (sentinel's own state) are never watched, so
    writing the baseline does not report itself.

    An exclude hides only what cannot run: a regular file without execute,
    setuid or setgid bits (:func:`harmless`) that is not in the baseline
    already. Directories are never hidden (an excluded directory is still
    walked and watched, and what it holds that can run is reported), nor are
    symlinks, devices, fifos and sockets, so ``*.tmp`` cannot hide an implant
    named ``x.tmp`` or kept in ``stash.tmp/``. The cost is bounded by the tree:
    one ``lstat`` per excluded entry at a scan, one watch per directory, and
    a hidden file's events lead to an ``lstat``, never to reading it.
    """

    def __init__(self, entries: Sequence[FimPath], exclude: Sequence[str] = (),
                 skip: Sequence[Path] = ()) -> None:
        self.roots: dict[str, FimPath] = {str(e.path): e for e in entries}
        # Longest first: the most specific entry wins.
        self._by_len = sorted(self.roots.items(), key=lambda kv: -len(kv[0]))
        self._name_re = _compile(p for p in exclude if "/" not in p)
        self._path_re = _compile(p for p in exclude if "/" in p)
        self._skip = frozenset(str(s) for s in skip)
        self._skip_under = tuple(str(s).rstrip("/") + "/" for s in skip)

    @classmethod
    def from_config(cls, config: Config, skip: Sequence[Path] = ()) -> Scope:
        """The scope of ``config.fim``; ``state_dir`` and ``skip`` are never watched."""
        return cls(config.fim.paths, config.fim.exclude, (config.state_dir, *skip))

    @staticmethod
    def _under(path: str, root: str) -> bool:
        return path.startswith(root if root.endswith("/") else root + "/")

    def skipped(self, path: str) -> bool:
        return path in self._skip or path.startswith(self._skip_under)

    def excluded_name(self, name: str) -> bool:
        return self._name_re is not None and self._name_re.fullmatch(name) is not None

    def excluded_path(self, path: str) -> bool:
        return self._path_re is not None and self._path_re.fullmatch(path) is not None

    def child_entry(self, directory: str) -> FimPath | None:
        """The entry whose rules cover the children of ``directory``, if any."""
        for root, e in self._by_len:
            if directory == root or (e.recursive and self._under(directory, root)):
                return e
        return None

    def entry_for(self, path: str) -> FimPath | None:
        """The most specific entry covering ``path``; None if unwatched.

        Excludes do not count here: whether one hides a path depends on what
        the path is (:meth:`hides`).
        """
        if self.skipped(path):
            return None
        e = self.roots.get(path)
        if e is not None:
            return e
        return self.child_entry(os.path.dirname(path))

    def excluded(self, path: str) -> bool:
        """Whether an exclude pattern matches ``path`` (a name of it below its root, or all)."""
        if path in self.roots or (self._name_re is None and self._path_re is None):
            return False
        if self.excluded_path(path):
            return True
        anc = next((r for r, _ in self._by_len if self._under(path, r)), None)
        if anc is None:
            return False
        return any(self.excluded_name(n) for n in path[len(anc):].lstrip("/").split("/"))

    def hides(self, path: str, mode: int) -> bool:
        """Whether an exclude hides ``path`` whose ``st_mode`` is ``mode`` (see class doc)."""
        return harmless(mode) and self.excluded(path)

    def tags(self, path: str) -> tuple[str, ...]:
        e = self.entry_for(path)
        return e.tags if e is not None else ()

    def change_tags(self, path: str, dest: str | None = None) -> tuple[str, ...]:
        """Tags of a change: the entry's, and for a move those of both ends."""
        tags = self.tags(path)
        if dest is not None:
            tags = tuple(dict.fromkeys(tags + self.tags(dest)))
        return tags

    def parent_dirs(self) -> set[str]:
        """Parents of the configured paths: watched so a root's own replacement is seen."""
        return {os.path.dirname(r) for r in self.roots if r != "/"}

    def wants_watch(self, directory: str) -> bool:
        """Whether ``directory`` needs an inotify watch of its own."""
        if self.skipped(directory):
            return False
        if directory in self.roots:
            return True
        return self.child_entry(directory) is not None and self.entry_for(directory) is not None

    def walk(self, under: str | None = None, tracked: Callable[[str], bool] | None = None,
             ) -> Iterator[tuple[str, os.stat_result]]:
        """Every covered path with its lstat, configured roots included, hidden ones left out.

        With ``under``, only that path and what lies below it. A path for which
        ``tracked`` is true (in the baseline already) is never hidden.
        """
        seen: set[str] = set()
        if under is None:
            starts = list(self.roots)
        else:
            # Configured roots below ``under`` may not be reachable through it
            # (a non-recursive entry above a recursive one).
            starts = [under, *(r for r in self.roots if self._under(r, under))]
        for start in sorted(starts):
            if start not in seen and self.entry_for(start) is not None:
                yield from self._walk_one(start, seen, tracked)

    def _walk_one(self, start: str, seen: set[str], tracked: Callable[[str], bool] | None,
                  ) -> Iterator[tuple[str, os.stat_result]]:
        try:
            st = os.lstat(start)
        except OSError:
            return
        if self.hides(start, st.st_mode) and not (tracked is not None and tracked(start)):
            return
        seen.add(start)
        yield start, st
        if not stat.S_ISDIR(st.st_mode):
            return
        # (directory, whether an exclude matches it): what is below it is matched too
        stack = [(start, self.excluded(start))]
        while stack:
            d, d_excluded = stack.pop()
            if self.child_entry(d) is None:
                continue
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for de in it:
                    p = de.path
                    if p in seen or self.skipped(p):
                        continue
                    try:
                        cst = de.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    excluded = d_excluded or self.excluded_name(de.name) or \
                        self.excluded_path(p)
                    if excluded and harmless(cst.st_mode) and not (
                            tracked is not None and tracked(p)):
                        continue
                    seen.add(p)
                    yield p, cst
                    if stat.S_ISDIR(cst.st_mode):
                        stack.append((p, excluded))


def record_from_stat(path: str, st: os.stat_result, sha256: str | None = None,
                     target: str | None = None) -> FileRecord:
    """The record of ``path`` from its stat (permission bits only in ``mode``)."""
    kind = file_type(st.st_mode)
    size = st.st_size if kind in ("file", "symlink") else None
    return FileRecord(path, kind, sha256, size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                      st.st_ino, st.st_mtime_ns, target)


def _open(path: str) -> int:
    try:
        return os.open(path, _OPEN_FLAGS | _NOATIME)
    except PermissionError:
        # O_NOATIME needs ownership or CAP_FOWNER; without it, open normally.
        return os.open(path, _OPEN_FLAGS)


def hash_fd(fd: int, size: int) -> str:
    """sha256 of an open regular file: one read when small, streamed otherwise."""
    if size <= _SMALL:
        # A regular file gives all it has up to the count asked; getting less
        # than size + 1 bytes means the whole file was read in this one call.
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return hashlib.sha256(data).hexdigest()
        os.lseek(fd, 0, os.SEEK_SET)  # it grew meanwhile: stream it
    with open(fd, "rb", buffering=0, closefd=False) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Retry(Exception):
    """The path changed type between lstat and open; look again."""


def _snapshot_once(path: str, st: os.stat_result | None) -> FileRecord | None:
    if st is None:
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        try:
            return record_from_stat(path, st, target=os.readlink(path))
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise _Retry from exc
            raise
    if not stat.S_ISREG(st.st_mode):
        return record_from_stat(path, st)
    try:
        fd = _open(path)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise _Retry from exc
        raise
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            raise _Retry
        return record_from_stat(path, fst, hash_fd(fd, fst.st_size))
    finally:
        os.close(fd)


def snapshot(path: str, st: os.stat_result | None = None,
             problems: list[str] | None = None) -> FileRecord | None:
    """The record of ``path`` now, or None if it does not exist.

    A file that cannot be read is recorded without a hash and the reason is
    appended to ``problems``.
    """
    for _ in range(3):
        try:
            return _snapshot_once(path, st)
        except FileNotFoundError:
            return None
        except _Retry:
            st = None
            continue
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                return None
            if problems is not None:
                problems.append(f"{path}: cannot read: {exc.strerror}")
            try:
                return record_from_stat(path, st if st is not None else os.lstat(path))
            except OSError:
                return None
    return None


@dataclass
class ScanResult:
    records: dict[str, FileRecord] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bytes_hashed: int = 0
    cancelled: bool = False


def snapshot_all(items: Iterable[tuple[str, os.stat_result]], workers: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 thread_name: str = "fim-hash",
                 known: Callable[[str], FileRecord | None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> ScanResult:
    """Snapshot every walked path, hashing regular files on a thread per core.

    Hashing releases the GIL, so threads run in parallel. Files that vanish
    before they are read are left out and named in ``problems``. With
    ``known`` (a quick look), a regular file whose size, mtime and inode
    match its known record keeps that record's hash instead of being read.
    When ``cancelled()`` turns true the workers stop early and the result is
    incomplete (``result.cancelled``): never compare it with a baseline.
    """
    result = ScanResult()
    todo: list[tuple[str, os.stat_result]] = []
    for path, st in items:
        if stat.S_ISREG(st.st_mode):
            old = known(path) if known is not None else None
            if old is not None and old.sha256 is not None and old.type == "file" and (
                    old.size, old.mtime_ns, old.inode) == (st.st_size, st.st_mtime_ns,
                                                           st.st_ino):
                result.records[path] = record_from_stat(path, st, old.sha256)
            else:
                todo.append((path, st))
            continue
        rec = snapshot(path, st, result.problems)
        if rec is not None:
            result.records[path] = rec
        else:
            result.problems.append(f"{path}: vanished during the scan")
    # Largest first, so one big file does not start last and run alone.
    todo.sort(key=lambda t: -t[1].st_size)
    lock = threading.Lock()
    nxt = iter(todo)

    def work() -> None:
        local: dict[str, FileRecord] = {}
        problems: list[str] = []
        done = 0
        while True:
            with lock:
                item = next(nxt, None)
            if item is None or (cancelled is not None and cancelled()):
                break
            rec = snapshot(item[0], item[1], problems)
            if rec is None:
                problems.append(f"{item[0]}: vanished during the scan")
                continue
            local[item[0]] = rec
            done += rec.size or 0
            if progress is not None:
                progress(rec.size or 0)
        with lock:
            result.records.update(local)
            result.problems.extend(problems)
            result.bytes_hashed += done

    n = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    threads = [threading.Thread(target=work, name=f"{thread_name}-{i}", daemon=True)
               for i in range(n - 1)]
    for t in threads:
        t.start()
    work()
    for t in threads:
        t.join()
    result.cancelled = cancelled is not None and cancelled()
    return result
