"""kill -9 with a backlog, restart: every accepted alert still arrives, the journal holds."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.keys import read_key_file
from sentinel.sinks import verify_journal
from tests.conftest import REPO
from tests.sinks.conftest import SECRET
from tests.sinks.receiver import Answer, Receiver, wait_for

HELPER = Path(__file__).with_name("crash_helper.py")
N = 200


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    for p in running:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def spawn(procs: list[subprocess.Popen[str]], config: Path, n: int, *mode: str
          ) -> subprocess.Popen[str]:
    env = {**os.environ, "SOC_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, str(HELPER), str(config), str(n), *mode], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.append(p)
    return p


def test_kill_9_with_a_backlog_then_restart_delivers_the_rest(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    # a slow receiver, so that a backlog is still spooled when the kill lands
    with Receiver(secret=SECRET, respond=lambda n, req: Answer(200, delay=0.02)) as r:
        state = tmp_path / "state"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"host: {{name: tally-01, addresses: [10.20.0.10]}}\n"
            f"state_dir: {state}\n"
            "outputs:\n"
            "  webhooks:\n"
            f"    - {{name: soc, url: '{r.url}', secret_env: SOC_SECRET,\n"
            "        retry: {initial: 50ms, max: 200ms}}\n")
        first = spawn(procs, config, N)
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "ready"
        wait_for(lambda: r.count() >= 10, what="delivery under way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = r.delivered_ids()
        assert len(at_kill) < N, "no backlog at the kill: the test proves nothing"

        accepted = {json.loads(line)["alert"]["id"]
                    for line in (state / "alerts.jsonl").read_text().splitlines()}
        assert len(accepted) == N

        spawn(procs, config, 0)
        wait_for(lambda: r.delivered_ids() >= accepted, timeout=60,
                 what="the backlog after restart")
        assert all(req.signature_ok for req in r.requests)
        # at least once: an alert in flight at the kill may come twice, never zero times
        assert r.delivered_ids() == accepted

    rep = verify_journal(state / "alerts.jsonl", read_key_file(state / "journal.key", "journal"))
    assert rep.ok and rep.records == N


def test_kill_9_between_journal_append_and_spool_insert_sends_the_alert_after_restart(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """The alert is journaled, the process dies before any spool holds it: the next
    start finds it in the journal past the spool's mark and sends it."""
    with Receiver(secret=SECRET) as r:
        state = tmp_path / "state"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"host: {{name: tally-01, addresses: [10.20.0.10]}}\n"
            f"state_dir: {state}\n"
            "outputs:\n"
            "  webhooks:\n"
            f"    - {{name: soc, url: '{r.url}', secret_env: SOC_SECRET,\n"
            "        retry: {initial: 50ms, max: 200ms}}\n"
            "    - {name: never, url: 'http://127.0.0.1:9/x', min_severity: critical,\n"
            "       exclude_tags: [accounts]}\n")
        first = spawn(procs, config, 1, "hang-spool")
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "in-window"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        journaled = [json.loads(line)["alert"]["id"]
                     for line in (state / "alerts.jsonl").read_text().splitlines()]
        assert len(journaled) == 1
        assert r.count() == 0

        second = spawn(procs, config, 0)
        assert second.stdout is not None
        assert second.stdout.readline().strip() == "ready"
        wait_for(lambda: r.delivered_ids() == set(journaled), timeout=30,
                 what="the journaled alert after restart")
    # routing still holds on the re-queue: the target that does not take it got nothing
    db = sqlite3.connect(state / "spool" / "never.db")
    try:
        assert db.execute("SELECT count(*) FROM pending").fetchone()[0] == 0
    finally:
        db.close()


def test_kill_9_between_two_lanes_spools_sends_the_alert_to_the_lane_that_missed_it(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """The first target's spool took the alert, the second's did not when the process
    died: after the restart the second target gets it (the first has it, at least once)."""
    with Receiver(secret=SECRET) as a, Receiver(secret=SECRET) as b:
        state = tmp_path / "state"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"host: {{name: tally-01, addresses: [10.20.0.10]}}\n"
            f"state_dir: {state}\n"
            "outputs:\n"
            "  webhooks:\n"
            f"    - {{name: first, url: '{a.url}', secret_env: SOC_SECRET}}\n"
            f"    - {{name: second, url: '{b.url}', secret_env: SOC_SECRET}}\n")
        crashed = spawn(procs, config, 1, "hang-second-spool")
        assert crashed.stdout is not None
        assert crashed.stdout.readline().strip() == "in-window"
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)
        [journaled] = [json.loads(line)["alert"]["id"]
                       for line in (state / "alerts.jsonl").read_text().splitlines()]

        again = spawn(procs, config, 0)
        assert again.stdout is not None
        assert again.stdout.readline().strip() == "ready"
        wait_for(lambda: b.delivered_ids() == {journaled}, timeout=30,
                 what="the alert at the target whose spool missed it")
        wait_for(lambda: a.delivered_ids() == {journaled}, timeout=30,
                 what="the alert at the target whose spool had it")
