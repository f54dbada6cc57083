"""The signed baseline store and its key: round trips, single updates, tampering."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from sentinel import keys
from sentinel.config import KeySource
from sentinel.keys import KeyUnavailable
from sentinel.sources.fim import Baseline, BaselineError, BaselineInvalid, FileRecord

KEY = b"k" * 32



def load_key(source: KeySource, state_dir: Path, create: bool) -> bytes:
    """The baseline's key, as the FIM source loads it."""
    return keys.load_key(source, state_dir, create=create, what="fim")

def rec(i: int, **kw: object) -> FileRecord:
    base = FileRecord(f"/opt/tally/bin/f{i:06d}", "file", f"{i:064x}", i, 0o755, 0, 0,
                      1000 + i, 1_700_000_000_000_000_000 + i, None)
    return base._replace(**kw)  # type: ignore[arg-type]


def test_round_trip_sorted_with_every_type(tmp_path: Path) -> None:
    records = [
        rec(2), rec(1),
        FileRecord("/etc/tally", "dir", None, None, 0o750, 0, 4, 7, 1, None),
        FileRecord("/etc/tally/current", "symlink", None, 9, 0o777, 0, 0, 8, 2, "bin/tally"),
        FileRecord("/etc/tally/\udcff-raw-byte", "file", "ab" * 32, 3, 0o600, 5, 6, 9, 3, None),
    ]
    db = tmp_path / "b.db"
    Baseline.create(db, KEY, records).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    b = Baseline.open(db, KEY)
    assert list(b.records()) == sorted(records, key=lambda r: r.path)
    assert b.get("/etc/tally/current") == records[3]
    b.close()


def test_single_updates_persist_and_verify(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    Baseline.create(db, KEY, [rec(i) for i in range(10)]).close()
    b = Baseline.open(db, KEY)
    b.put(rec(3, sha256="f" * 64))
    b.delete(rec(4).path)
    b.put(rec(99))
    b.flush()
    gen = b.generation
    b.close()
    again = Baseline.open(db, KEY)
    assert again.get(rec(3).path) == rec(3, sha256="f" * 64)
    assert again.get(rec(4).path) is None and again.get(rec(99).path) == rec(99)
    assert len(again) == 10 and again.generation == gen
    again.close()


def test_unflushed_changes_are_not_half_written(tmp_path: Path) -> None:
    """A crash before flush leaves the last committed, still valid, baseline."""
    db = tmp_path / "b.db"
    Baseline.create(db, KEY, [rec(i) for i in range(5)]).close()
    b = Baseline.open(db, KEY)
    b.put(rec(1, mode=0o777))
    b._conn.close()  # simulate the process dying before flush()
    assert Baseline.open(db, KEY).get(rec(1).path) == rec(1)


def _sql(db: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "b.db"
    Baseline.create(path, KEY, [rec(i) for i in range(20)]).close()
    return path


def edit_record(db: Path, path: str, old: bytes, new: bytes) -> None:
    """Edit one record's stored bytes in place, as someone with SQLite but no key would."""
    conn = sqlite3.connect(db)
    (raw,) = conn.execute("SELECT rec FROM files WHERE path = ?", (os.fsencode(path),)).fetchone()
    assert old in raw
    conn.execute("UPDATE files SET rec = ? WHERE path = ?",
                 (raw.replace(old, new), os.fsencode(path)))
    conn.commit()
    conn.close()


def test_an_edited_row_is_named(db: Path) -> None:
    edit_record(db, rec(7).path, b"\x00493\x00", b"\x00511\x00")  # mode 0755 -> 0777
    with pytest.raises(BaselineInvalid, match="f000007 was edited outside sentinel"):
        Baseline.open(db, KEY)


def test_a_row_under_another_path_is_caught(db: Path) -> None:
    """A valid record and MAC copied under a different path key."""
    conn = sqlite3.connect(db)
    r, m = conn.execute("SELECT rec, mac FROM files WHERE path = ?",
                        (os.fsencode(rec(1).path),)).fetchone()
    conn.execute("UPDATE files SET rec = ?, mac = ? WHERE path = ?",
                 (r, m, os.fsencode(rec(2).path)))
    conn.commit()
    conn.close()
    with pytest.raises(BaselineInvalid, match="f000002 was edited outside sentinel"):
        Baseline.open(db, KEY)


def test_a_deleted_row_is_caught(db: Path) -> None:
    _sql(db, "DELETE FROM files WHERE path = ?", os.fsencode(rec(7).path))
    with pytest.raises(BaselineInvalid, match="19 records that do not add up to the signed 20"):
        Baseline.open(db, KEY)


def test_a_replayed_old_row_is_caught(db: Path) -> None:
    """A row taken from an older signed copy carries a valid row MAC, but not the sum."""
    conn = sqlite3.connect(db)
    old_row = conn.execute("SELECT * FROM files WHERE path = ?",
                           (os.fsencode(rec(3).path),)).fetchone()
    conn.close()
    b = Baseline.open(db, KEY)
    b.put(rec(3, sha256="e" * 64))
    b.flush()
    b.close()
    _sql(db, "INSERT OR REPLACE INTO files VALUES (?, ?, ?)", *old_row)
    with pytest.raises(BaselineInvalid, match="do not add up"):
        Baseline.open(db, KEY)


def test_an_edited_summary_is_caught(db: Path) -> None:
    _sql(db, "UPDATE meta SET value = ? WHERE key = 'count'", b"19")
    with pytest.raises(BaselineInvalid, match="signed summary does not verify"):
        Baseline.open(db, KEY)


def test_wrong_key_and_not_a_database(db: Path, tmp_path: Path) -> None:
    with pytest.raises(BaselineInvalid, match="does not verify with the configured key"):
        Baseline.open(db, b"x" * 32)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\0garbage" * 1000)
    with pytest.raises(BaselineInvalid, match="replaced or corrupted"):
        Baseline.open(junk, KEY)
    with pytest.raises(BaselineError, match="sentinel baseline init"):
        Baseline.open(tmp_path / "missing.db", KEY)


def test_100k_records_load_and_verify(tmp_path: Path) -> None:
    """The issue's size: a 100,000-record baseline opens (every row verified).

    How fast is measured by bench/fim_verify.py, not asserted here.
    """
    db = tmp_path / "big.db"
    Baseline.create(db, KEY, (rec(i) for i in range(100_000))).close()
    started = time.perf_counter()
    b = Baseline.open(db, KEY)
    print(f"open+verify 100k: {time.perf_counter() - started:.3f} s")
    assert len(b) == 100_000 and b.get(rec(99_999).path) == rec(99_999)
    b.close()


# -- keys ------------------------------------------------------------------


def test_key_file_generated_0600_in_new_0700_dirs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_key(KeySource(file=Path("keys/fim.key")), state, create=True)
    path = state / "keys" / "fim.key"
    assert len(key) == 64 and path.read_bytes().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert load_key(KeySource(file=path), tmp_path / "elsewhere", create=False) == key


def test_key_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyUnavailable, match="does not exist; `sentinel baseline init`"
                       " creates it"):
        load_key(KeySource(file=Path("k")), tmp_path, create=False)
    loose = tmp_path / "loose.key"
    loose.write_text("a" * 64)
    os.chmod(loose, 0o644)
    with pytest.raises(KeyUnavailable, match=r"mode 0644.*chmod 600"):
        load_key(KeySource(file=loose), tmp_path, create=False)
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    os.chmod(short, 0o600)
    with pytest.raises(KeyUnavailable, match="holds 3 bytes; at least 32"):
        load_key(KeySource(file=short), tmp_path, create=False)
    monkeypatch.delenv("FIM_TEST_KEY", raising=False)
    with pytest.raises(KeyUnavailable, match="FIM_TEST_KEY is not set"):
        load_key(KeySource(env="FIM_TEST_KEY"), tmp_path, create=True)
    monkeypatch.setenv("FIM_TEST_KEY", "z" * 40)
    assert load_key(KeySource(env="FIM_TEST_KEY"), tmp_path, create=True) == b"z" * 40


def test_a_file_vanishing_mid_scan_is_reported_not_fatal(tmp_path: Path) -> None:
    """Walked, then deleted before its turn to be hashed: named in problems, left out."""
    from sentinel.config import FimPath
    from sentinel.sources.fim.scan import Scope, snapshot_all

    (tmp_path / "keep").write_text("k")
    (tmp_path / "gone").write_text("g")
    items = list(Scope([FimPath(tmp_path)]).walk())
    (tmp_path / "gone").unlink()
    result = snapshot_all(items)
    assert set(result.records) == {str(tmp_path), str(tmp_path / "keep")}
    assert result.problems == [f"{tmp_path / 'gone'}: vanished during the scan"]
