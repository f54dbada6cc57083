"""A delivery lane's durable queue: SQLite in WAL mode under ``state_dir/spool``.

A record is written (and, with ``durable``, fsynced) before the first attempt
and deleted on success, so whatever is in the spool at start is what was not
yet delivered: a crash or ``kill -9`` loses nothing. Permanent failures move to
the ``dead`` table, kept for an operator. Readers page through the table in
insertion order; nothing loads the whole backlog.

Each record carries the journal ``seq`` of its alert, and the ``meta`` table
the highest one the spool ever took (``taken``, written in the same
transaction as the record). At start, whatever the journal holds past
``taken`` for this lane was journaled but never spooled (a crash between the
two writes) and is queued again. Beside the database, ``<spool>.floor`` holds
the lowest journal ``seq`` not yet done; it survives the database, so when a
spool is found corrupt (moved aside to ``<spool>.corrupt-<unix time>``), its
replacement re-queues from the journal everything from there on.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS active (
    fingerprint TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    ends_at REAL NOT NULL,
    next_send REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_TAKEN = ("INSERT INTO meta VALUES ('taken', ?) ON CONFLICT (key) DO UPDATE SET"
          " value = max(value, excluded.value)")


class SpoolCorrupt(Exception):
    """The spool file is not a sound SQLite database."""


@dataclass(frozen=True, slots=True)
class Record:
    """One pending delivery."""

    seq: int
    id: str
    body: bytes
    created: float
    attempts: int
    jseq: int | None = None


@dataclass(frozen=True, slots=True)
class Active:
    """A firing Alertmanager alert (by label fingerprint) that is re-sent until it ends."""

    fingerprint: str
    body: bytes
    ends_at: float
    next_send: float


class Spool:
    """One lane's queue. Thread-safe: ``insert`` from the submitter, the rest
    from the lane's worker."""

    def __init__(self, path: Path, durable: bool = True, lazy: bool = False) -> None:
        """Open (creating) the spool; ``SpoolCorrupt`` when the file is no sound database.

        With ``lazy``, a spool that cannot be opened for another reason (a full
        disk at start, an I/O error) is opened again at its next use instead, and
        every use fails until then: the daemon starts, and the lane catches up
        from the journal once the spool opens.
        """
        self.path = path
        self.floor_path = path.with_name(path.name + ".floor")
        self._durable = durable
        self._lock = threading.Lock()
        self._floor_written: int | None = None
        self._db: sqlite3.Connection | None = None
        self.depth = 0
        self.problem: str | None = None  # why it is not open yet
        try:
            self._connect()
        except (sqlite3.OperationalError, OSError) as exc:
            if not lazy:
                raise
            self.problem = str(exc)

    def _c(self) -> sqlite3.Connection:
        """The connection, opening the spool now if it could not be opened before."""
        if self._db is None:
            try:
                self._connect()
            except OSError as exc:
                raise sqlite3.OperationalError(str(exc)) from exc
            self.problem = None
        assert self._db is not None
        return self._db

    def _connect(self) -> None:
        path = self.path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # alerts can be sensitive: the spool (and the WAL files SQLite copies the
        # mode to) is readable by the daemon's user only
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL fsyncs the WAL on every commit: an accepted alert survives power loss
            db.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            # SQLite's default lets the WAL grow to 4 MB before it is folded back and
            # never shrinks it: on a small state partition the WAL alone fills the disk
            db.execute("PRAGMA wal_autocheckpoint=64")
            db.execute("PRAGMA journal_size_limit=524288")
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                msg = "; ".join(str(r[0]) for r in check[:3])
                raise sqlite3.DatabaseError(msg)
            db.executescript(_SCHEMA)
            cols = {r[1] for r in db.execute("PRAGMA table_info(pending)")}
            if "jseq" not in cols:  # a spool from before journal re-queueing
                db.execute("ALTER TABLE pending ADD COLUMN jseq INTEGER")
            self.depth = int(db.execute("SELECT count(*) FROM pending").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            # OperationalError (locked, disk full, unreadable) is not corruption:
            # moving a sound spool aside would only lose what it holds
            db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise
            msg = f"spool {path} is corrupt: {exc}"
            raise SpoolCorrupt(msg) from exc
        self._db = db

    def insert(self, id_: str, body: bytes, created: float, jseq: int | None = None) -> None:
        """Queue one alert; ``jseq`` is its journal record, remembered as taken."""
        with self._lock:
            self._c().execute("BEGIN IMMEDIATE")
            try:
                self._c().execute(
                    "INSERT INTO pending (id, body, created, jseq) VALUES (?, ?, ?, ?)",
                    (id_, body, created, jseq))
                if jseq is not None:
                    self._c().execute(_TAKEN, (jseq,))
                self._c().execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._c().execute("ROLLBACK")
                raise
            self.depth += 1

    @property
    def taken(self) -> int | None:
        """The highest journal seq this spool took, None for a spool that never took one."""
        with self._lock:
            row = self._c().execute("SELECT value FROM meta WHERE key = 'taken'").fetchone()
        return None if row is None else int(row[0])

    def set_taken(self, jseq: int) -> None:
        """Mark journal records up to ``jseq`` as seen (a new spool starts at the head)."""
        with self._lock:
            self._c().execute(_TAKEN, (jseq,))

    def floor(self) -> int | None:
        """The lowest journal seq not yet done: the oldest pending one, else taken + 1."""
        with self._lock:
            row = self._c().execute("SELECT min(jseq) FROM pending").fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
            row = self._c().execute("SELECT value FROM meta WHERE key = 'taken'").fetchone()
        return None if row is None else int(row[0]) + 1

    def write_floor(self) -> None:
        """Keep ``<spool>.floor`` current (cheap when unchanged); what a corrupt spool's
        replacement re-queues from."""
        floor = self.floor()
        if floor is None or floor == self._floor_written:
            return
        tmp = self.floor_path.with_name(self.floor_path.name + ".tmp")
        tmp.write_text(f"{floor}\n")
        os.replace(tmp, self.floor_path)
        self._floor_written = floor

    def page(self, limit: int) -> list[Record]:
        """The oldest ``limit`` pending records."""
        with self._lock:
            rows = self._c().execute(
                "SELECT seq, id, body, created, attempts, jseq FROM pending ORDER BY seq LIMIT ?",
                (limit,)).fetchall()
            if len(rows) < limit:
                # a short page is the whole queue: correct the count if another
                # connection (an overlapping Delivery during a reload) changed it
                self.depth = len(rows)
        return [Record(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def oldest(self) -> float | None:
        """Creation time of the oldest pending record (an index lookup)."""
        with self._lock:
            row = self._c().execute("SELECT created FROM pending ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def delete(self, seqs: list[int]) -> None:
        with self._lock:
            n = self._c().execute(
                f"DELETE FROM pending WHERE seq IN ({','.join('?' * len(seqs))})", seqs
            ).rowcount
            self.depth -= n

    def bump(self, seqs: list[int]) -> None:
        """Count one more failed attempt on each record."""
        with self._lock:
            self._c().execute(
                f"UPDATE pending SET attempts = attempts + 1"
                f" WHERE seq IN ({','.join('?' * len(seqs))})", seqs)

    def requeue(self, rec: Record) -> None:
        """Move a record behind every other pending one (its failed attempt counted)."""
        with self._lock:
            self._c().execute("BEGIN IMMEDIATE")
            try:
                if self._c().execute("DELETE FROM pending WHERE seq = ?", (rec.seq,)).rowcount:
                    self._c().execute(
                        "INSERT INTO pending (id, body, created, attempts, jseq)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (rec.id, rec.body, rec.created, rec.attempts + 1, rec.jseq))
                self._c().execute("COMMIT")
            except BaseException:
                self._c().execute("ROLLBACK")
                raise

    def kill(self, rec: Record, now: float, status: int | None, reason: str) -> None:
        """Move a permanently failed record to the dead-letter table."""
        with self._lock:
            self._c().execute("BEGIN IMMEDIATE")
            try:
                self._c().execute(
                    "INSERT OR REPLACE INTO dead VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.seq, rec.id, rec.body, rec.created, rec.attempts + 1, now, status,
                     reason))
                n = self._c().execute("DELETE FROM pending WHERE seq = ?", (rec.seq,)).rowcount
                self._c().execute("COMMIT")
            except BaseException:
                self._c().execute("ROLLBACK")
                raise
            self.depth -= n

    def dead(self) -> list[tuple[str, int | None, str]]:
        """(id, status, reason) of every dead-lettered record."""
        with self._lock:
            rows = self._c().execute("SELECT id, status, reason FROM dead ORDER BY seq").fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def revive(self, ids: Collection[str] = ()) -> int:
        """Move dead-lettered records (those of ``ids``, or all) back to the end of the
        queue, their attempts reset: after the receiver was fixed. How many moved."""
        where, args = "", list(ids)
        if args:
            where = f" WHERE id IN ({','.join('?' * len(args))})"
        with self._lock:
            self._c().execute("BEGIN IMMEDIATE")
            try:
                rows = self._c().execute(
                    f"SELECT seq, id, body, created FROM dead{where} ORDER BY seq", args
                ).fetchall()
                for seq, id_, body, created in rows:
                    self._c().execute(
                        "INSERT INTO pending (id, body, created) VALUES (?, ?, ?)",
                        (id_, body, created))
                    self._c().execute("DELETE FROM dead WHERE seq = ?", (seq,))
                self._c().execute("COMMIT")
            except BaseException:
                self._c().execute("ROLLBACK")
                raise
            self.depth += len(rows)
        return len(rows)

    # -- Alertmanager re-send state ---------------------------------------

    def activate(self, items: list[Active]) -> None:
        """Record alerts as firing; an existing fingerprint keeps the later end."""
        with self._lock:
            self._c().executemany(
                "INSERT INTO active VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET"
                " body = excluded.body, ends_at = max(ends_at, excluded.ends_at),"
                " next_send = min(next_send, excluded.next_send)",
                [(a.fingerprint, a.body, a.ends_at, a.next_send) for a in items])

    def due(self, now: float, limit: int) -> list[Active]:
        with self._lock:
            rows = self._c().execute(
                "SELECT fingerprint, body, ends_at, next_send FROM active WHERE next_send <= ?"
                " ORDER BY next_send LIMIT ?", (now, limit)).fetchall()
        return [Active(r[0], bytes(r[1]), r[2], r[3]) for r in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._c().execute("SELECT min(next_send) FROM active").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def reschedule(self, fingerprint: str, next_send: float) -> None:
        with self._lock:
            self._c().execute("UPDATE active SET next_send = ? WHERE fingerprint = ?",
                             (next_send, fingerprint))

    def resolved(self, fingerprint: str, ends_at: float) -> None:
        """Forget an alert whose resolution was delivered, unless it was extended since."""
        with self._lock:
            self._c().execute("DELETE FROM active WHERE fingerprint = ? AND ends_at <= ?",
                             (fingerprint, ends_at))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()


def read_floor(path: Path) -> int | None:
    """The floor a spool at ``path`` last recorded, None when there is none readable."""
    try:
        text = path.with_name(path.name + ".floor").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def move_aside(path: Path, now: float | None = None) -> Path:
    """Rename a corrupt spool (and its WAL and shared-memory files) out of the way."""
    stamp = int(now if now is not None else time.time())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    os.replace(path, aside)
    return aside
