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
    """The verified set of records, kept in memory and written through to SQLite.

    :meth:`put` and :meth:`delete` change one record; :meth:`flush` commits the
    pending changes with a fresh summary MAC. One thread at a time uses it.
    """

    def __init__(self, conn: sqlite3.Connection, key: bytes, path: Path | None,
                 rows: dict[str, FileRecord | bytes], total: int, generation: int) -> None:
        self._conn = conn
        self._key = key
        self.path = path
        self._rows = rows
        self._total = total
        self.generation = generation
        self._dirty = False

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

    # -- writing ----------------------------------------------------------

    def put(self, rec: FileRecord) -> None:
        """Add or replace one record (committed by the next :meth:`flush`)."""
        old = self.get(rec.path)
        if old == rec:
            return
        if old is not None:
            self._total -= int.from_bytes(row_mac(self._key, old), "big")
        mac = row_mac(self._key, rec)
        self._total = (self._total + int.from_bytes(mac, "big")) % _MOD
        self._rows[rec.path] = rec
        self._conn.execute(_UPSERT, _row(rec, mac))
        self._dirty = True

    def delete(self, path: str) -> None:
        """Remove one record (committed by the next :meth:`flush`)."""
        old = self.get(path)
        if old is None:
            return
        del self._rows[path]
        self._total = (self._total - int.from_bytes(row_mac(self._key, old), "big")) % _MOD
        self._conn.execute("DELETE FROM files WHERE path = ?", (os.fsencode(path),))
        self._dirty = True

    def flush(self) -> None:
        """Commit pending changes together with a new signed summary."""
        if not self._dirty:
            return
        self.generation += 1
        count = len(self._rows)
        meta = {"count": str(count).encode(), "sum": self._total.to_bytes(64, "big"),
                "generation": str(self.generation).encode(),
                "mac": _summary_mac(self._key, count, self._total, self.generation)}
        self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
        self._conn.commit()
        self._dirty = False

    def close(self) -> None:
        """Flush what is pending and close the file."""
        with contextlib.suppress(sqlite3.Error):
            self.flush()
        self._conn.close()
