"""Following a file across rotation (rename, copytruncate), with bounded lines."""

from __future__ import annotations

from pathlib import Path

from sentinel.sources.auth.tail import MAX_LINE, FileTail


def test_history_is_skipped_and_appended_lines_are_read(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"old\n")
    t = FileTail(log)
    assert t.poll() == [] and t.open
    with log.open("ab") as f:
        f.write(b"new 1\nnew ")
        f.flush()
        assert t.poll() == [b"new 1"]
        f.write(b"2\n")
    assert t.poll() == [b"new 2"]


def test_rename_rotation_reads_the_old_file_to_its_end_then_the_new(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"")
    t = FileTail(log)
    t.poll()
    with log.open("ab") as f:
        log.rename(tmp_path / "auth.log.1")
        f.write(b"last of old\n")  # the writer still holds the old file
    log.write_bytes(b"first of new\n")
    assert t.poll() == [b"last of old", b"first of new"]


def test_copytruncate_starts_again_at_the_top(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"a long line already there\n")
    t = FileTail(log)
    t.poll()
    log.write_bytes(b"x\n")  # truncated, then shorter
    assert t.poll() == [b"x"]


def test_a_missing_file_is_not_open_and_is_read_from_its_start_when_it_appears(
        tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    t = FileTail(log)
    assert t.poll() == [] and not t.open
    log.write_bytes(b"one\n")
    assert t.poll() == [b"one"] and t.open


def test_an_endless_line_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"")
    t = FileTail(log)
    t.poll()
    log.write_bytes(b"A" * (MAX_LINE * 3) + b"\nok\n")
    lines = t.poll()
    assert [len(x) for x in lines] == [MAX_LINE, 2]
