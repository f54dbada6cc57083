"""Logging: the level option and environment variable, and journald priorities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from sentinel import logs
from tests.support import free_port
from tests.test_daemon import NotifySocket, write_config

SENTINEL = str(Path(sys.executable).with_name("sentinel"))


def _log_three(path: Path, monkeypatch: pytest.MonkeyPatch, journal: bool) -> list[str]:
    with path.open("w") as out:
        if journal:
            st = os.fstat(out.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.configure(stream=out)
        log = structlog.get_logger(component="test")
        log.debug("debug_line")
        log.info("info_line")
        log.warning("warning_line")
        log.error("error_line")
        logs.configure()  # back to stdout before the file closes: later tests log too
    return path.read_text().splitlines()


def test_under_journald_each_line_carries_its_syslog_priority(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_LOG_LEVEL", raising=False)
    lines = _log_three(tmp_path / "journal.log", monkeypatch, journal=True)
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    assert [json.loads(line[3:])["event"] for line in lines] == [
        "info_line", "warning_line", "error_line"]


def test_without_journald_lines_are_plain_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_LOG_LEVEL", raising=False)
    # JOURNAL_STREAM naming another stream (the daemon's stdout went elsewhere)
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    lines = _log_three(tmp_path / "plain.log", monkeypatch, journal=False)
    assert [json.loads(line)["level"] for line in lines] == ["info", "warning", "error"]


def test_the_level_comes_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_LOG_LEVEL", "warning")
    lines = _log_three(tmp_path / "w.log", monkeypatch, journal=False)
    assert [json.loads(line)["event"] for line in lines] == ["warning_line", "error_line"]
    monkeypatch.setenv("SENTINEL_LOG_LEVEL", "debug")
    lines = _log_three(tmp_path / "d.log", monkeypatch, journal=False)
    assert json.loads(lines[0])["event"] == "debug_line"


def _daemon_log(tmp_path: Path, *flag: str) -> str:
    """The daemon's stdout from start to a clean stop."""
    notify = NotifySocket(tmp_path / "notify.sock")
    cfg = tmp_path / "config.yaml"
    write_config(cfg, tmp_path / "state", free_port())
    env = {k: v for k, v in os.environ.items()
           if k not in ("SENTINEL_LOG_LEVEL", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["NOTIFY_SOCKET"] = str(notify.path)
    proc = subprocess.Popen([SENTINEL, *flag, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        notify.wait_for("READY=1")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        notify.close()
    assert proc.returncode == 0, err
    return out


def test_log_level_flag_reaches_the_daemon(tmp_path: Path) -> None:
    """``--log-level warning`` hides the daemon's info lines; the default shows them."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    default = [json.loads(line)["level"] for line in _daemon_log(tmp_path / "a").splitlines()]
    quiet = [json.loads(line)["level"]
             for line in _daemon_log(tmp_path / "b", "--log-level", "warning").splitlines()]
    assert "info" in default
    assert "info" not in quiet


def test_an_unknown_level_is_a_clear_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "SENTINEL_LOG_LEVEL": "loud"}
    proc = subprocess.run([SENTINEL, "--version"], capture_output=True, text=True, env=env,
                          timeout=30)
    assert proc.returncode == 0  # --version needs no log
    proc = subprocess.run([SENTINEL, "check", "-c", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "sentinel: SENTINEL_LOG_LEVEL: 'loud' is not a log level;"
        " valid: debug, info, warning, error")
    flag = subprocess.run([SENTINEL, "--log-level", "loud", "check"], capture_output=True,
                          text=True, timeout=30)
    assert flag.returncode == 2 and "invalid choice: 'loud'" in flag.stderr
