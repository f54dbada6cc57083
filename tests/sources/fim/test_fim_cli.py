"""`sentinel baseline init|verify` as an operator runs them: exit codes, output, rules."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.sources.fim.fimkit import Site

RULES = """\
rules:
  - id: tally-binary-changed
    title: Tally binary changed
    severity: critical
    kind: [fim.modified, fim.attrib, fim.created, fim.deleted, fim.moved]
    match:
      path_tags: tally-binaries
  - id: baseline-untrusted
    title: The file-integrity baseline failed its signature
    severity: critical
    kind: fim.baseline_invalid
    match:
      path: {exists: true}
"""


def sentinel(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture
def cfg(site: Site) -> Path:
    (site.root / "rules").mkdir()
    (site.root / "rules" / "fim.yaml").write_text(RULES)
    site.config(fim_extra=())
    path = site.root / "config.yaml"
    path.write_text(path.read_text() + "rules: {paths: [rules/]}\n")
    return path


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def test_init_then_verify_clean(site: Site, cfg: Path) -> None:
    init = sentinel("baseline", "init", "-c", cfg)
    assert init.returncode == 0, init.stderr
    assert "baseline: 6 paths (3 files" in init.stderr
    assert "\r" not in init.stderr  # no progress bar when stderr is not a terminal
    key = site.state / "baseline.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((site.state / "baseline.db").stat().st_mode) == 0o600
    verify = sentinel("baseline", "verify", "-c", cfg)
    assert (verify.returncode, verify.stdout) == (0, "")
    assert "6 paths checked" in verify.stderr and "0 changed" in verify.stderr


def test_verify_reports_drift_as_events_and_alerts(site: Site, cfg: Path) -> None:
    assert sentinel("baseline", "init", "-c", cfg).returncode == 0
    (site.w / "bin" / "tally").write_bytes(b"#!/bin/sh\necho evil\n")
    os.chmod(site.w / "conf" / "app.conf", 0o666)
    ev = sentinel("baseline", "verify", "-c", cfg, "--events")
    assert ev.returncode == 1, ev.stderr
    events = lines(ev.stdout)
    assert [(e["kind"], e["path"], e["changed"], e["offline"]) for e in events] == [
        ("fim.modified", str(site.w / "bin" / "tally"), ["content", "size"], True),
        ("fim.attrib", str(site.w / "conf" / "app.conf"), ["mode"], True),
    ]  # sorted by path
    al = sentinel("baseline", "verify", "-c", cfg)
    assert al.returncode == 1
    alerts = lines(al.stdout)
    assert [(a["rule"], a["severity"], a["event"]["path"]) for a in alerts] == [  # type: ignore[index]
        ("tally-binary-changed", "critical", str(site.w / "bin" / "tally"))]
    # verify is read-only: the drift is still there
    assert sentinel("baseline", "verify", "-c", cfg).returncode == 1
    # an approved change: re-baseline, and verify is clean again
    assert sentinel("baseline", "init", "-c", cfg).returncode == 0
    assert sentinel("baseline", "verify", "-c", cfg).returncode == 0


def test_verify_of_a_tampered_baseline_exits_2_and_alerts(site: Site, cfg: Path) -> None:
    assert sentinel("baseline", "init", "-c", cfg).returncode == 0
    conn = sqlite3.connect(site.state / "baseline.db")
    conn.execute("DELETE FROM files WHERE path = ?", (os.fsencode(site.w / "readme"),))
    conn.commit()
    conn.close()
    out = sentinel("baseline", "verify", "-c", cfg)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "not trusted" in out.stderr and "do not add up" in out.stderr
    (alert,) = lines(out.stdout)
    assert (alert["rule"], alert["event"]["kind"]) == (  # type: ignore[index]
        "baseline-untrusted", "fim.baseline_invalid")
    ev = sentinel("baseline", "verify", "-c", cfg, "--events")
    assert ev.returncode == 2
    (event,) = lines(ev.stdout)
    assert event["kind"] == "fim.baseline_invalid"
    assert event["path"] == str(site.state / "baseline.db")


def test_errors_are_one_line_exit_2(site: Site, cfg: Path) -> None:
    missing = sentinel("baseline", "verify", "-c", cfg)
    assert missing.returncode == 2
    assert "no baseline" in missing.stderr and "sentinel baseline init" in missing.stderr
    bad = site.root / "bad.yaml"
    bad.write_text(f"state_dir: {site.state}\nfim:\n  paths: [relative/path]\n")
    out = sentinel("baseline", "init", "-c", bad)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{bad}:3:" in out.stderr and "must be absolute" in out.stderr
    none = sentinel("baseline")
    assert none.returncode == 2 and "init or verify" in none.stderr


def test_init_shows_a_progress_bar_on_a_terminal(site: Site, cfg: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run([sys.executable, "-m", "sentinel", "baseline", "init", "-c",
                               str(cfg)], stdout=subprocess.DEVNULL, stderr=follower,
                              timeout=120, cwd=REPO)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the writer side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    text = out.decode(errors="replace")
    assert "hashing" in text and "100%" in text  # tqdm's bar, drawn on the terminal
