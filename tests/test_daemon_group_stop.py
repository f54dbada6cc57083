"""Ctrl-C in a terminal signals the whole process group: sentinel stops cleanly and
its journal reader is stopped by sentinel, not killed beside it (which logged a dead
reader, a blind input, at every stop)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import free_port
from tests.test_daemon import SENTINEL, NotifySocket, write_config


def test_a_signal_to_the_process_group_stops_sentinel_and_its_reader_in_order(
        tmp_path: Path) -> None:
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl is not installed (CI installs systemd)")
    notify = NotifySocket(tmp_path / "notify.sock")
    cfg = tmp_path / "config.yaml"
    write_config(cfg, tmp_path / "state", free_port(), extra="auth: {journal: true}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
    env["NOTIFY_SOCKET"] = str(notify.path)
    # a process group of its own, as a shell gives a foreground job
    proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        notify.wait_for("READY=1")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "auth_input_reading" in events
    assert "stopped" in events
    assert "auth_journal_exited" not in events
    assert "auth_input_blind" not in events
