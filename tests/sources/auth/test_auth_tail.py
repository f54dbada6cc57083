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


def test_the_source_reports_a_missing_log_as_blind_until_it_appears(tmp_path: Path) -> None:
    from sentinel.config_reader import load_config
    from sentinel.events import Event
    from sentinel.metrics import Metrics
    from sentinel.sources.auth import AuthSource
    from tests.support import wait_for

    log = tmp_path / "auth.log"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"host: {{name: t, addresses: [10.0.0.1]}}\nstate_dir: {tmp_path}\n"
                   f"auth: {{files: [{log}]}}\n")
    src = AuthSource(load_config(cfg), Metrics())
    got: list[Event] = []
    src.start(got.append)
    try:
        name = f"auth:{log}"
        assert src.components() == {name: False} and src.alive()
        # a file that appears after the start is read from its first line
        log.write_text("2026-12-01T20:22:25+00:00 t su[5]: FAILED SU (to root) eve on pts/0\n")
        wait_for(lambda: src.components() == {name: True}, 5.0, "the input to be read")
        wait_for(lambda: got, 5.0, "the record")
        assert got[0].kind == "auth.privilege" and got[0].fields["user"] == "eve"
    finally:
        src.stop()
    assert not src.alive()
