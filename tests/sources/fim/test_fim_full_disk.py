"""A full state disk: FIM holds its changes back, quietly, and reports them once it can.

``state_dir`` is a real 2 MiB tmpfs (mounting one needs root). While it is full
the journal refuses every alert, so the baseline must not take the changes in;
the FIM source backs off (a few log lines, no traceback, no spinning). Once
space returns every change is journaled and only then committed.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sources.fim.daemonkit import SENTINEL, Daemon
from tests.sources.fim.fimkit import Site
from tests.support import wait_for

N = 40
SPELL = 4.0  # seconds the disk stays full while changes keep coming


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "state"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    """Fill the file system to the last byte; the returned file frees it when removed."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def test_full_disk_holds_changes_then_reports_them(tmp_path: Path, tmpfs: Path) -> None:
    d = Daemon(tmp_path, state=tmpfs)
    d.start()
    try:
        filler = _fill(tmpfs)
        w = os.fsencode(d.w)
        want: set[bytes] = set()
        t_end = time.monotonic() + SPELL
        i = 0
        while time.monotonic() < t_end and i < N:
            p = d.w / f"during-{i:03d}"
            p.write_bytes(b"x\n")
            want.add(w + b"/" + os.fsencode(p.name))
            i += 1
            time.sleep(SPELL / N)
        time.sleep(max(0.0, t_end - time.monotonic()))
        assert not want & d.alerted_paths(), "the disk was not full: the test proves nothing"
        spell_log = d.log_lines()
        filler.unlink()
        d.wait_alerted(want, timeout=60)
    finally:
        code = d.stop()
    assert code == 0
    # quiet while full: each failing part says so once (and retries with backoff), never
    # a traceback per attempt
    events = [json.loads(line).get("event", "") for line in spell_log if line.startswith("{")]
    assert "Traceback" not in "\n".join(spell_log)
    # said by the FIM source (the journal refused its events) or by a sink that holds
    # the alerts itself until they can be journaled
    assert {"fim_alerts_not_journaled", "journal_write_failing"} & set(events), events
    assert len(events) < 30, events
    # committed once journaled: the baseline now holds every change, so a restart
    # reports none of them again
    verify = subprocess.run([SENTINEL, "baseline", "verify", "-c", str(d.config)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_baseline_commit_on_a_full_disk_backs_off_and_catches_up(
        tmp_path: Path, tmpfs: Path) -> None:
    """The journal is fine (the collector acknowledges) but the baseline's own disk is
    full: commits fail whole, are retried with backoff (not in a loop), and are
    written once space returns, without a restart."""
    site = Site(tmp_path)
    try:
        assert site.state == tmpfs
        site.start()
        db = site.state / "baseline.db"

        def rows() -> int:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return int(conn.execute("SELECT count(*) FROM files").fetchone()[0])
            finally:
                conn.close()

        before = rows()
        filler = _fill(tmpfs)
        for i in range(20):
            (site.w / f"new-{i:02d}").write_bytes(b"x" * 4096)
        assert len(site.settled()) == 20
        time.sleep(2.5)
        failures = site.metric("sentinel_fim_errors_total", stage="commit")
        # first attempt, then 1 s, 2 s, 4 s later: a loop would count hundreds
        assert 1 <= failures <= 3, failures
        assert rows() == before
        assert site.metric("sentinel_fim_oldest_uncommitted_change_seconds") >= 2.0
        filler.unlink()
        wait_for(lambda: rows() == before + 20 + 1, 30, "the held changes committed")  # + barrier
        assert site.metric("sentinel_fim_oldest_uncommitted_change_seconds") == 0.0
        site.stop()
        assert site.start() == []
    finally:
        site.stop()


def test_kill_9_while_the_journal_is_full_loses_no_change(tmp_path: Path, tmpfs: Path) -> None:
    """The journal's disk is full, the baseline's is not: the alerts wait in memory, so
    the baseline must not take the changes in. kill -9 then, free the space, restart:
    every change is reported (offline) and journaled."""
    d = Daemon(tmp_path, state=tmpfs, baseline=tmp_path / "baseline.db")
    d.start()
    try:
        filler = _fill(tmpfs)
        w = os.fsencode(d.w)
        want = set()
        for i in range(20):
            (d.w / f"while-full-{i:02d}").write_bytes(b"x\n")
            want.add(w + b"/while-full-%02d" % i)
        time.sleep(2.0)  # settled, evaluated, held; a wrongly early commit would be done
        assert not want & d.alerted_paths(), "the journal took them: the test proves nothing"
        d.kill9()
        filler.unlink()
        d.start()
        d.wait_alerted(want, timeout=60)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
