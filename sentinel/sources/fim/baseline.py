"""The signed file-integrity baseline: one SQLite file in ``state_dir``.

Each row holds one file's attributes and an HMAC-SHA512 of them (the row MAC).
A ``meta`` table holds the record count, the sum of every row MAC modulo 2**512
and a generation number, all under one more HMAC (the summary MAC). Together
they authenticate the whole set:

- an edited row no longer matches its row MAC;
- a deleted, added or replayed row changes the count or the sum, and the
  summary MAC cannot be recomputed without the key;
- a file from another key (or not a baseline at all) fails the summary MAC.

The sum (rather than one MAC over every row) lets a single record change in
O(1): subtract the old row MAC, add the new one, re-MAC the summary. Opening
verifies every row, so the in-memory index is trusted and later edits of the
file on disk are caught at the next open. Rolling the whole file back to an
older signed copy is not detectable from the file alone; it cannot hide a
change made after that copy, it only makes sentinel report changes again.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hmac
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, KeysView
from pathlib import Path
from typing import NamedTuple

from sentinel.keys import make_private_dirs

FORMAT = b"sentinel-baseline-v1"
_MOD = 1 << 512
# ``rec`` is the record's canonical bytes (what the row MAC covers): NUL-separated
# text fields, readable with any SQLite shell. Keeping it whole makes opening
# 100,000 records a matter of reading three columns and one HMAC per row.
_SCHEMA = """
CREATE TABLE files (path BLOB PRIMARY KEY, rec BLOB NOT NULL, mac BLOB NOT NULL)
  WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""
_UPSERT = "INSERT OR REPLACE INTO files VALUES (?, ?, ?)"


def hold_lock(path: Path) -> int:
    """Take ``<baseline>.lock`` for as long as the returned descriptor stays open.

    The daemon holds it while it watches; ``baseline init`` needs it too, so a new
    baseline is never swapped in under a running daemon. Raises BlockingIOError
    when another process holds it.
    """
    make_private_dirs(path.parent)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


class BaselineError(Exception):
    """The baseline cannot be used: missing, unreadable, or no key."""


class BaselineInvalid(BaselineError):
    """The baseline fails its signature: edited, replaced, or a different key."""


class FileRecord(NamedTuple):
    """One watched path as last accepted. ``mode`` holds permission bits only.

    ``type`` is file, dir, symlink, fifo, socket, char or block. ``sha256`` is
    set for readable regular files, ``size`` for files and symlinks, ``target``
    for symlinks (never followed).
    """

    path: str
    type: str
    sha256: str | None
    size: int | None
    mode: int
    uid: int
    gid: int
    inode: int
    mtime_ns: int
    target: str | None


def _canonical(r: FileRecord) -> bytes:
    # NUL cannot occur in a path or a link target, so the join is unambiguous;
    # "-" stands for None where the real value is digits or hex.
    text = "\0".join((
        r.path, r.type, r.sha256 or "-", "-" if r.size is None else str(r.size),
        str(r.mode), str(r.uid), str(r.gid), str(r.inode), str(r.mtime_ns),
        "" if r.target is None else r.target,
    ))
    return FORMAT + b"\0" + text.encode("utf-8", "surrogateescape")


def _parse(raw: bytes) -> FileRecord:
    parts = raw.split(b"\0")
    if len(parts) != 11 or parts[0] != FORMAT:
        msg = "malformed record"
        raise ValueError(msg)
    kind = parts[2].decode()
    return FileRecord(
        parts[1].decode("utf-8", "surrogateescape"), kind,
        None if parts[3] == b"-" else parts[3].decode(),
        None if parts[4] == b"-" else int(parts[4]),
        int(parts[5]), int(parts[6]), int(parts[7]), int(parts[8]), int(parts[9]),
        parts[10].decode("utf-8", "surrogateescape") if kind == "symlink" else None,
    )


def row_mac(key: bytes, r: FileRecord) -> bytes:
    """The HMAC-SHA512 that authenticates one record."""
    return hmac.digest(key, _canonical(r), "sha512")


def _summary_mac(key: bytes, count: int, total: int, generation: int) -> bytes:
    msg = b"\0".join((FORMAT, b"summary", str(count).encode(), total.to_bytes(64, "big"),
                      str(generation).encode()))
    return hmac.digest(key, msg, "sha512")



def _row(r: FileRecord, mac: bytes) -> tuple[bytes, bytes, bytes]:
    return (os.fsencode(r.path), _canonical(r), mac)


class Baseline:
    """The verified set of records: a view in memory, and the committed file.

    :meth:`put` and :meth:`delete` change the view at once (what the watcher
    compares with) and queue the change for the file, tagged with a number
    the caller chooses (the FIM source: the sequence number of the event that
    reported it). :meth:`flush` writes the queued changes up to a tag, in
    order, with a fresh summary MAC, in one transaction: a change whose alert
    is not yet safe in the journal stays out of the file, so a crash makes it
    reported again instead of forgotten. One thread at a time uses it.
    """

    def __init__(self, conn: sqlite3.Connection, key: bytes, path: Path | None,
                 rows: dict[str, FileRecord | bytes], total: int, generation: int) -> None:
        self._conn = conn
        self._key = key
        self.path = path
        self._rows = rows
        # what the file holds: the summary is signed over these, never over the view
        self._total = total
        self._count = len(rows)
        self.generation = generation
        # (tag, path, record or None to delete, when queued: time.monotonic())
        self._pending: collections.deque[tuple[int, str, FileRecord | None, float]] = \
            collections.deque()

    # -- opening and creating -------------------------------------------

    @classmethod
    def open(cls, path: Path, key: bytes) -> Baseline:
        """Open and verify every record; raise :class:`BaselineInvalid` on any mismatch."""
        if not path.exists():
            msg = f"no baseline at {path}; create it with: sentinel baseline init"
            raise BaselineError(msg)
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        except sqlite3.Error as exc:
            msg = f"{path}: cannot open the baseline: {exc}"
            raise BaselineError(msg) from exc
        try:
            return cls._verify(conn, key, path)
        except BaselineInvalid:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            msg = f"{path} is not a readable baseline ({exc}); it was replaced or corrupted"
            raise BaselineInvalid(msg) from exc

    @classmethod
    def _verify(cls, conn: sqlite3.Connection, key: bytes, path: Path) -> Baseline:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        try:
            fmt = bytes(meta["format"])
            count = int(meta["count"])
            total = int.from_bytes(bytes(meta["sum"]), "big")
            generation = int(meta["generation"])
            signed = bytes(meta["mac"])
        except (KeyError, ValueError, TypeError) as exc:
            msg = f"{path}: summary record missing or malformed ({exc}); not a sentinel baseline"
            raise BaselineInvalid(msg) from exc
        if fmt != FORMAT:
            msg = f"{path}: unknown baseline format {fmt!r}"
            raise BaselineInvalid(msg)
        if not hmac.compare_digest(signed, _summary_mac(key, count, total, generation)):
            msg = (f"{path}: the signed summary does not verify with the configured key"
                   " (wrong key, or the baseline was replaced or its summary edited)")
            raise BaselineInvalid(msg)
        # Records are parsed when first used; what is verified here is their bytes.
        rows: dict[str, FileRecord | bytes] = {}
        acc = 0
        base = hmac.new(key, digestmod="sha512")
        for p, rec, stored in conn.execute("SELECT path, rec, mac FROM files"):
            h = base.copy()
            h.update(rec)
            mac = h.digest()
            name = p.decode("utf-8", "surrogateescape")
            if not hmac.compare_digest(mac, stored) or not rec.startswith(
                    FORMAT + b"\0" + p + b"\0"):
                msg = f"{path}: the record for {name} was edited outside sentinel"
                raise BaselineInvalid(msg)
            acc += int.from_bytes(mac, "big")
            rows[name] = rec
        if len(rows) != count or acc % _MOD != total:
            msg = (f"{path}: holds {len(rows)} records that do not add up to the signed"
                   f" {count} (records deleted, added or replayed outside sentinel)")
            raise BaselineInvalid(msg)
        return cls(conn, key, path, rows, total, generation)

    @classmethod
    def create(cls, path: Path | None, key: bytes, records: Iterable[FileRecord]) -> Baseline:
        """Write a new signed baseline atomically (or in memory when ``path`` is None)."""
        rows: dict[str, FileRecord | bytes] = {r.path: r for r in records}
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            total = cls._fill(conn, key, rows.values())
            return cls(conn, key, None, rows, total, 1)
        make_private_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp)
            # A temp file renamed into place only when complete: no journal needed.
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            total = cls._fill(conn, key, rows.values())
            conn.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        return cls(conn, key, path, rows, total, 1)

    @staticmethod
    def _fill(conn: sqlite3.Connection, key: bytes, records: Iterable[FileRecord | bytes]) -> int:
        conn.executescript(_SCHEMA)
        total = 0
        batch = []
        for r in records:
            assert isinstance(r, FileRecord)
            mac = row_mac(key, r)
            total += int.from_bytes(mac, "big")
            batch.append(_row(r, mac))
        total %= _MOD
        conn.executemany(_UPSERT, batch)
        meta = {"format": FORMAT, "count": str(len(batch)).encode(),
                "sum": total.to_bytes(64, "big"), "generation": b"1",
                "created": str(time.time()).encode(),
                "mac": _summary_mac(key, len(batch), total, 1)}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        conn.commit()
        return total

    # -- reading ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, path: object) -> bool:
        return path in self._rows

    def get(self, path: str) -> FileRecord | None:
        """The record of ``path``, or None."""
        r = self._rows.get(path)
        if isinstance(r, bytes):
            r = self._rows[path] = _parse(r)
        return r

    def paths(self) -> KeysView[str]:
        """Every recorded path (unsorted, cheap)."""
        return self._rows.keys()

    def records(self) -> Iterator[FileRecord]:
        """Every record, sorted by path."""
        for p in sorted(self._rows):
            r = self.get(p)
            assert r is not None
            yield r

    def as_dict(self) -> dict[str, FileRecord]:
        """A copy of the records keyed by path."""
        return {r.path: r for r in self.records()}

    def under(self, path: str) -> list[FileRecord]:
        """Records strictly below directory ``path``, sorted by path."""
        prefix = path.rstrip("/") + "/"
        out = [self.get(p) for p in sorted(self._rows) if p.startswith(prefix)]
        return [r for r in out if r is not None]

    def at_and_under(self, path: str | None) -> dict[str, FileRecord]:
        """The records of ``path`` and of everything below it (all when None), by path."""
        prefix = None if path is None else path.rstrip("/") + "/"
        out: dict[str, FileRecord] = {}
        for p in list(self._rows):
            if prefix is None or p == path or p.startswith(prefix):
                r = self.get(p)
                assert r is not None
                out[p] = r
        return out

    # -- writing ----------------------------------------------------------

    def put(self, rec: FileRecord, tag: int = 0) -> None:
        """Add or replace one record in the view; written by a :meth:`flush` reaching ``tag``."""
        if self.get(rec.path) == rec:
            return
        self._rows[rec.path] = rec
        self._queue(tag, rec.path, rec)

    def delete(self, path: str, tag: int = 0) -> None:
        """Remove one record from the view; written by a :meth:`flush` reaching ``tag``."""
        if self.get(path) is None:
            return
        del self._rows[path]
        self._queue(tag, path, None)

    def _queue(self, tag: int, path: str, rec: FileRecord | None) -> None:
        if self._pending and tag < self._pending[-1][0]:
            msg = f"baseline change tagged {tag} after one tagged {self._pending[-1][0]}"
            raise ValueError(msg)
        self._pending.append((tag, path, rec, time.monotonic()))

    @property
    def pending(self) -> int:
        """Changes in the view that are not in the file yet."""
        return len(self._pending)

    def oldest_pending(self, now: float) -> float:
        """Seconds the oldest change not in the file has waited (0 when none).

        Safe to call from another thread (a metrics scrape).
        """
        try:
            return max(0.0, now - self._pending[0][3])
        except IndexError:
            return 0.0

    def flush(self, upto: int | None = None) -> None:
        """Commit the queued changes tagged up to ``upto`` (all when None) with a new summary.

        All or nothing: when the commit fails (a full disk), the transaction is
        rolled back, the changes stay queued and the error is raised.
        """
        n = 0
        for tag, _, _, _ in self._pending:
            if upto is not None and tag > upto:
                break
            n += 1
        if n == 0:
            return
        total, count = self._total, self._count
        cur = self._conn.cursor()
        try:
            for i in range(n):
                _, path, rec, _ = self._pending[i]
                key = os.fsencode(path)
                row = cur.execute("SELECT mac FROM files WHERE path = ?", (key,)).fetchone()
                if row is not None:
                    total -= int.from_bytes(row[0], "big")
                    count -= 1
                if rec is None:
                    cur.execute("DELETE FROM files WHERE path = ?", (key,))
                    continue
                mac = row_mac(self._key, rec)
                total += int.from_bytes(mac, "big")
                count += 1
                cur.execute(_UPSERT, _row(rec, mac))
            total %= _MOD
            generation = self.generation + 1
            meta = {"count": str(count).encode(), "sum": total.to_bytes(64, "big"),
                    "generation": str(generation).encode(),
                    "mac": _summary_mac(self._key, count, total, generation)}
            cur.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
            self._conn.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.rollback()
            raise
        finally:
            cur.close()
        for _ in range(n):
            self._pending.popleft()
        self._total, self._count, self.generation = total, count, generation

    def close(self, upto: int | None = None) -> None:
        """Flush what is queued up to ``upto`` (all when None) and close the file.

        Changes tagged later stay out of the file; a failed commit is dropped
        here, since those changes are then reported again at the next start.
        """
        with contextlib.suppress(sqlite3.Error, OSError):
            self.flush(upto)
        self._conn.close()
