"""`sentinel run` with its state dir on a 2 MiB tmpfs that fills up: /healthz names the
journal, the held-alerts gauge counts, one log line marks each end of the spell, and
every file alert reaches the webhook once space returns. A real daemon process, real
inotify, a real tmpfs and a real HTTP receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.sinks.receiver import Receiver, free_port, wait_for
from tests.sinks.test_sink_full_disk import fill, tmpfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
N = 20


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def held(port: int) -> float:
    for line in get(port, "/metrics")[1].decode().splitlines():
        if line.startswith("sentinel_journal_held_alerts "):
            return float(line.split()[1])
    return -1.0


def test_daemon_on_a_full_disk_says_so_and_delivers_every_alert_after(tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n"
        "  - id: file-created\n"
        "    title: '{path} created'\n"
        "    severity: high\n"
        "    kind: fim.created\n"
        "    match: {path_tags: w}\n")
    port = free_port()
    with tmpfs(tmp_path / "state") as state, Receiver() as r:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            "host: {name: test-host, addresses: [10.20.0.10]}\n"
            f"state_dir: {state}\n"
            "rules: {paths: [rules]}\n"
            f"fim:\n  paths: [{{path: {watched}, tags: [w]}}]\n"
            "outputs:\n"
            f"  metrics: {{listen: '127.0.0.1:{port}'}}\n"
            f"  webhooks:\n    - {{name: soc, url: '{r.url}',"
            " retry: {initial: 50ms, max: 200ms}}\n")
        proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], text=True, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # started in full (the first baseline written) before the disk fills: a
            # disk that is full before that is the start-up test below
            wait_for(lambda: _up(port), timeout=30, what="/healthz 200")
            filler = fill(state)
            for i in range(N):
                (watched / f"f{i}").write_text("x")

            def journal_down() -> Any:
                code, body = get(port, "/healthz")
                return code == 503 and "journal" in json.loads(body)["down"]

            wait_for(journal_down, timeout=20, what="/healthz 503 naming the journal")
            assert held(port) > 0
            filler.unlink()

            def paths() -> set[str]:
                return {req.json()["event"]["path"] for req in r.delivered()}

            wait_for(lambda: paths() >= {str(watched / f"f{i}") for i in range(N)},
                     timeout=40, what="every file alert at the webhook")
            wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=20,
                     what="/healthz 200 again")
            assert held(port) == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    events = [ln.get("event") for ln in lines]
    assert events.count("journal_write_failing") == 1, out[-3000:]
    assert events.count("journal_write_recovered") == 1
    # the alert path logs the spell, not a traceback per alert (the file watcher's
    # own handling of a full disk is its own business)
    assert not [ln for ln in lines if "exception" in ln
                and ln.get("component") in ("delivery", "journal", "daemon")], out[-3000:]
    assert "Traceback" not in err


def _up(port: int) -> bool:
    try:
        return get(port, "/healthz")[0] == 200
    except OSError:
        return False


def test_daemon_that_cannot_write_its_first_baseline_says_the_disk_is_full_and_exits_1(
        tmp_path: Path) -> None:
    """A full disk before the first baseline is written: one clear line and exit 1 (the
    unit restarts it until space returns), not a traceback; exit 2 would stop the
    restarts as if the config were wrong."""
    watched = tmp_path / "watched"
    watched.mkdir()
    for i in range(200):  # a baseline of some size: its rows do not fit
        (watched / f"file-{i:03d}-{'x' * 100}").write_text("x")
    with tmpfs(tmp_path / "state") as state:
        # the journal and keys exist (an earlier start got that far), then the disk fills
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            "host: {name: test-host, addresses: [10.20.0.10]}\n"
            f"state_dir: {state}\n"
            "rules: {paths: []}\n"
            f"fim:\n  paths: [{{path: {watched}}}]\n")
        filler = fill(state)
        proc = subprocess.run([SENTINEL, "run", "-c", str(cfg)], text=True, cwd=tmp_path,
                              capture_output=True, timeout=60, check=False)
        filler.unlink()
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert "the disk is full" in proc.stderr, proc.stderr[-2000:]


def test_sqlite_disk_full_error_counts_as_a_full_disk(tmp_path: Path) -> None:
    """The first baseline is an SQLite file: its "database or disk is full" on a real
    full tmpfs is a full disk (exit 1 and restarts), like ENOSPC from a plain write."""
    import sqlite3

    from sentinel.daemon import _disk_full

    with tmpfs(tmp_path / "state", size="64k") as state:
        filler = fill(state)
        try:
            conn = sqlite3.connect(state / "baseline.db")
            with pytest.raises(sqlite3.Error) as got:
                conn.executescript("CREATE TABLE t (x TEXT);"
                                   "INSERT INTO t VALUES (hex(randomblob(100000)));")
            conn.close()
        finally:
            filler.unlink()
    assert _disk_full(got.value), got.value
    assert not _disk_full(sqlite3.OperationalError("no such table: t"))
    assert not _disk_full(OSError(13, "Permission denied"))
