"""The alert journal: every alert, in order, in a keyed hash chain.

Format (one JSON object per line, UTF-8)::

    {"seq":0,"prev":"000…0","alert":{…CONTRACT §4 alert…},"mac":"<64 hex>"}

* ``seq`` counts records from 0 across every file of the journal.
* ``prev`` is the ``mac`` of the record before (64 zeros for ``seq`` 0).
* ``alert`` is the alert exactly as in CONTRACT §4; its bytes are the same as
  the ``json`` webhook body.
* ``mac`` is HMAC-SHA256, under the journal key, of the line's bytes from the
  opening ``{`` up to (not including) ``,"mac":``. Because it covers ``prev``,
  each record vouches for all before it; without the key nobody can rebuild
  the chain after an edit, a deletion or a reordering.

Rotation by size renames the current file ``alerts.jsonl`` to the next free
``alerts.jsonl.N`` (``.1`` is the oldest) and starts an empty current file;
the chain simply continues, so the files read in the order ``.1, .2, …, .N``,
then the current file, form one chain.

A crash mid-write can leave the last line incomplete. On open the writer keeps
such a fragment aside in ``<path>.partial-<unix time>``, truncates it off, and
resumes the chain from the last complete record.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sentinel import logs
from sentinel.alert import Alert

GENESIS = "0" * 64
_MAC_TAIL = re.compile(rb',"mac":"([0-9a-f]{64})"\}$')


def _log() -> Any:
    # looked up per use: a logger bound at import would miss logs.configure()
    return logs.get("journal")


class JournalError(Exception):
    """The journal cannot be opened or written."""


def alert_json(alert: Alert) -> bytes:
    """The alert's JSON bytes, as journaled and as the ``json`` webhook body."""
    # Names reach here as text (sentinel.events.name_fields); a lone surrogate that
    # slipped through anyway is written as its JSON escape, never an exception that
    # loses the alert.
    return json.dumps(alert.to_dict(), separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "backslashreplace")


def encode_record(key: bytes, seq: int, prev: str, alert: bytes) -> tuple[bytes, str]:
    """One journal line (with its newline) and its MAC."""
    payload = b'{"seq":%d,"prev":"%s","alert":%s' % (seq, prev.encode(), alert)
    mac = hmac.new(key, payload, hashlib.sha256).hexdigest()
    return payload + b',"mac":"' + mac.encode() + b'"}\n', mac


def decode_record(key: bytes, line: bytes) -> tuple[dict[str, Any], bool] | None:
    """Parse one line (without newline): ``(record, mac_ok)``, or None if not a record."""
    m = _MAC_TAIL.search(line)
    if m is None:
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if (not isinstance(rec, dict) or set(rec) != {"seq", "prev", "alert", "mac"}
            or not isinstance(rec["seq"], int) or not isinstance(rec["prev"], str)):
        return None
    want = hmac.new(key, line[: m.start()], hashlib.sha256).hexdigest()
    return rec, hmac.compare_digest(want, m.group(1).decode())


def journal_files(path: Path) -> list[Path]:
    """The journal's files in chain order: rotated ``path.N`` ascending, then ``path``."""
    rotated: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        prefix = path.name + "."
        for p in path.parent.iterdir():
            suffix = p.name[len(prefix):]
            if p.name.startswith(prefix) and suffix.isdigit():
                rotated.append((int(suffix), p))
    files = [p for _, p in sorted(rotated)]
    if path.exists():
        files.append(path)
    return files


def records_after(path: Path, key: bytes, after: int
                  ) -> Iterator[tuple[int, dict[str, Any], bytes]]:
    """``(seq, alert, alert bytes)`` of every record past ``after`` whose MAC verifies,
    in order; the bytes are the alert exactly as journaled (the ``json`` webhook body).

    Files whose last record is at or before ``after`` are skipped unread, so a
    start-up re-queue costs the tail of the journal, not its history. A record
    that fails its MAC is not returned: it may have been planted.
    """
    for f in journal_files(path):
        try:
            with f.open("rb") as fh:
                _, last, _ = _last_line(fh, f)
                found = decode_record(key, last) if last else None
                if found is not None and int(found[0]["seq"]) <= after:
                    continue
                fh.seek(0)
                for raw in fh:
                    line = raw.rstrip(b"\n")
                    got = decode_record(key, line)
                    if got is None or not got[1] or not isinstance(got[0]["alert"], dict):
                        continue
                    seq = int(got[0]["seq"])
                    if seq > after:
                        yield seq, got[0]["alert"], _alert_bytes(line)
        except FileNotFoundError:
            continue  # rotated away while we read


def _alert_bytes(line: bytes) -> bytes:
    """The ``alert`` member of a verified record line, byte for byte."""
    start = line.index(b',"alert":') + len(b',"alert":')
    end = _MAC_TAIL.search(line)
    assert end is not None  # the line verified, so it has its MAC tail
    return line[start:end.start()]


_registry: dict[Path, Journal] = {}
_registry_lock = threading.Lock()


def open_journal(path: Path, key: bytes, fsync: str = "record", fsync_interval: float = 1.0,
                 rotate_size: int = 64 * 2**20, on_record: Callable[[], None] | None = None
                 ) -> Journal:
    """This process's :class:`Journal` at ``path``, opened once and shared.

    A reload builds the new Delivery while the old one still takes alerts; both
    must append to one chain, never two writers each resuming from the same
    record. Each holder calls ``close()``; the last one closes the file.
    """
    real = path.resolve()
    with _registry_lock:
        j = _registry.get(real)
        if j is not None and not j.closed:
            if not hmac.compare_digest(j.key, key):
                msg = (f"journal {path}: the key changed while the journal is open; restart"
                       " the daemon (a new key needs a new journal path)")
                raise JournalError(msg)
            j.retain(fsync, fsync_interval, rotate_size, on_record)
            return j
        j = Journal(path, key, fsync, fsync_interval, rotate_size, on_record)
        _registry[real] = j
        return j


def _exclusive(path: Path) -> int:
    """Lock ``path.lock`` for this process: two processes appending would fork the chain."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        msg = (f"journal {path} is in use by another sentinel process (it holds {lock});"
               " stop it first")
        raise JournalError(msg) from exc
    return fd


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Appends alerts to the chain. Thread-safe; ``append`` returns once durable
    per the ``fsync`` policy (``record``: every record; ``interval``: at most
    ``fsync_interval`` seconds later; ``none``: when the kernel decides)."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        fsync: str = "record",
        fsync_interval: float = 1.0,
        rotate_size: int = 64 * 2**20,
        on_record: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._key = key
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._rotate_size = rotate_size
        self._on_record = on_record
        self._lock = threading.Lock()
        self._dirty = False
        self._sync_failing = False
        self._closed = threading.Event()
        self._refs = 1
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = _exclusive(path)
        try:
            self._seq, self._prev = self._resume()
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._size = os.fstat(self._fd).st_size
        _fsync_dir(path.parent)
        self._syncer: threading.Thread | None = None
        self._start_syncer()

    @property
    def key(self) -> bytes:
        return self._key

    def retain(self, fsync: str, fsync_interval: float, rotate_size: int,
               on_record: Callable[[], None] | None) -> None:
        """Take one more reference (a reloaded Delivery) and apply its settings."""
        with self._lock:
            self._refs += 1
            self._fsync, self._fsync_interval = fsync, fsync_interval
            self._rotate_size, self._on_record = rotate_size, on_record
        self._start_syncer()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _start_syncer(self) -> None:
        if self._fsync == "interval" and (self._syncer is None or not self._syncer.is_alive()):
            self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync",
                                            daemon=True)
            self._syncer.start()

    # -- public ----------------------------------------------------------

    def append(self, alert_bytes: bytes) -> int:
        """Append one alert (its JSON bytes); returns the record's ``seq``.

        The return is the promise: the record is in the file, durable per the
        ``fsync`` policy. On ``JournalError`` nothing was added (a partial
        line is cut off again) and the caller still owns the alert.
        """
        with self._lock:
            if self._closed.is_set():
                msg = f"journal {self.path} is closed"
                raise JournalError(msg)
            line, mac = encode_record(self._key, self._seq, self._prev, alert_bytes)
            if self._size and self._size + len(line) > self._rotate_size:
                self._rotate()
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    msg = f"short write ({written} of {len(line)} bytes)"
                    raise OSError(errno.ENOSPC, msg)
                if self._fsync == "record":
                    os.fdatasync(self._fd)
                else:
                    self._dirty = True
            except OSError as exc:
                # nothing of a failed append may stay: half a record would break the
                # chain, and a whole one whose fsync failed would be written again
                # under the same seq by the caller's retry
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                msg = f"journal {self.path}: cannot write: {exc.strerror or exc}"
                raise JournalError(msg) from exc
            seq = self._seq
            self._size += len(line)
            self._seq += 1
            self._prev = mac
        if self._on_record is not None:
            self._on_record()
        return seq

    def head(self) -> tuple[int, str]:
        """(records so far, MAC of the last record) — what an attestation signs."""
        with self._lock:
            return self._seq, self._prev

    def alive(self) -> bool:
        return self._fsync != "interval" or (self._syncer is not None
                                             and self._syncer.is_alive())

    def close(self) -> None:
        """Drop one reference; the last one syncs and closes the file."""
        with self._lock:
            if self._closed.is_set():
                return
            self._refs -= 1
            if self._refs > 0:
                return
            self._closed.set()
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                os.close(self._lock_fd)
        with _registry_lock:
            if _registry.get(self.path.resolve()) is self:
                del _registry[self.path.resolve()]
        if self._syncer is not None:
            self._syncer.join(timeout=2.0)

    # -- inside ----------------------------------------------------------

    def _sync_loop(self) -> None:
        while not self._closed.wait(self._fsync_interval):
            with self._lock:
                if self._dirty and not self._closed.is_set():
                    try:
                        os.fdatasync(self._fd)
                        self._dirty = False
                    except OSError as exc:
                        # once per failing spell, not once per interval
                        if not self._sync_failing:
                            _log().error("journal fsync failed", path=str(self.path),
                                         error=exc.strerror)
                        self._sync_failing = True
                        continue
                    if self._sync_failing:
                        _log().info("journal fsync works again", path=str(self.path))
                    self._sync_failing = False

    def _rotate(self) -> None:
        rotated = journal_files(self.path)[:-1]
        n = int(rotated[-1].name.rsplit(".", 1)[1]) + 1 if rotated else 1
        target = self.path.with_name(f"{self.path.name}.{n}")
        try:
            os.fsync(self._fd)
            os.rename(self.path, target)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            # a journal that cannot rotate keeps growing: better than losing alerts.
            # If the rename happened, our fd still appends to the rotated file and
            # the chain stays whole either way.
            _log().error("journal rotation failed; appending to the current file",
                         path=str(self.path), error=exc.strerror)
            return
        os.close(self._fd)
        self._fd = fd
        self._size = 0
        _log().info("journal rotated", path=str(self.path), rotated_to=str(target),
                    next_seq=self._seq)

    def _resume(self) -> tuple[int, str]:
        """Find where the chain stands; repair a crash-truncated tail of the current file."""
        for f in reversed(journal_files(self.path)):
            if f == self.path:
                self._repair_tail(f)
            found = self._last_record(f)
            if found is not None:
                rec, ok = found
                if not ok:
                    _log().error("the journal's last record does not verify with the key;"
                               " continuing the chain, run `sentinel journal verify`",
                               path=str(f), seq=rec["seq"])
                return int(rec["seq"]) + 1, str(rec["mac"])
        return 0, GENESIS

    def _repair_tail(self, f: Path) -> None:
        with f.open("rb+") as fh:
            offset, fragment, complete = _last_line(fh, f)
            if complete or not fragment:
                return
            decoded = decode_record(self._key, fragment)
            if decoded is not None and decoded[1]:
                # the writer stopped just before the newline: the record is whole
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                return
            aside = f.with_name(f"{f.name}.partial-{int(time.time())}")
            aside.write_bytes(fragment)
            fh.truncate(offset)
            fh.flush()
            os.fsync(fh.fileno())
        _log().warning("journal ended in an incomplete record (a crash mid-write);"
                       " kept it aside and truncated it", path=str(f), offset=offset,
                       length=len(fragment), kept_in=str(aside))

    def _last_record(self, f: Path) -> tuple[dict[str, Any], bool] | None:
        """The last parseable record of ``f``: its last line, else a scan from the start."""
        with f.open("rb") as fh:
            _, line, _ = _last_line(fh, f)
        if not line:
            return None
        if (found := decode_record(self._key, line)) is not None:
            return found
        _log().error("the journal's last line is not a record; scanning for the last one",
                     path=str(f))
        last = None
        with f.open("rb") as fh:
            for raw in fh:
                if (found := decode_record(self._key, raw.rstrip(b"\n"))) is not None:
                    last = found
        return last


_TAIL_STEP = 64 * 1024
_LINE_MAX = 1 << 20


def _last_line(fh: BinaryIO, f: Path) -> tuple[int, bytes, bool]:
    """(offset, bytes without newline, ends in a newline) of the file's last line.

    Reads backwards from the end in small steps, so resuming costs the same
    whatever the file's size.
    """
    size = fh.seek(0, os.SEEK_END)
    start = size
    while True:
        start = max(0, start - _TAIL_STEP)
        fh.seek(start)
        chunk = fh.read(size - start)
        complete = chunk.endswith(b"\n")
        body = chunk[:-1] if complete else chunk
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return start + cut + 1, body[cut + 1:], complete
        if size - start >= _LINE_MAX:
            msg = f"journal {f}: the last line is longer than 1 MiB; not a journal?"
            raise JournalError(msg)
