"""The assembled daemon across its seams: reload under traffic, restart with offline drift."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import Lab, needs_lab, wait_for

LAB_RULES = Path(__file__).parent / "rules"
FORBIDDEN = ("198.51.100.23", 9999)


def scrape(lab: Lab) -> str:
    url = f"http://127.0.0.1:{lab.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def connect_forbidden() -> int:
    """One connection from the tally server to the forbidden port; its source port."""
    with socket.create_connection(FORBIDDEN, timeout=2) as s:
        return int(s.getsockname()[1])


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "labrules"
    shutil.copytree(LAB_RULES, d)
    return d


def test_reload_under_traffic_loses_no_event(tmp_path: Path, rules_dir: Path) -> None:
    """A rule file edited while connections flow: every connection still gets its alert,
    and a broken rule file afterwards leaves the running rules in force."""
    needs_lab()
    rule_file = rules_dir / "lab.yaml"
    original = rule_file.read_text()
    # one alert per connection is what is checked: no storm control folding them
    with Lab(tmp_path / "lab", extra_rules=rules_dir, storm={"max_alerts": 10_000}) as lab:
        ports: list[int] = []
        go_on = threading.Event()
        go_on.set()

        def traffic() -> None:
            for _ in range(240):  # bounded: 240 connections at ~100/s
                ports.append(connect_forbidden())
                go_on.wait(0.01)

        t = threading.Thread(target=traffic, name="lab-traffic")
        t.start()
        wait_for(lambda: len(ports) > 60, 20, "traffic to start")
        rule_file.write_text(original.replace("Lab: connection", "Lab v2: connection"))
        wait_for(lambda: sample(scrape(lab), 'sentinel_config_reloads_total{result="success"}')
                 >= 1, 20, "the reload")
        t.join(timeout=60)
        assert len(ports) == 240

        def got() -> list[dict[str, Any]]:
            return [a for a in lab.alerts_at(lab.bawaslu) if a["rule"] == "lab-forbidden-port"]

        wait_for(lambda: len({a["event"]["src_port"] for a in got()}) >= 240,
                 30, "an alert for every connection")
        seen = {a["event"]["src_port"] for a in got()}
        assert seen == set(ports)
        titles = {str(a["title"]).split(":")[0] for a in got()}
        assert titles == {"Lab", "Lab v2"}, titles

        # a broken rule file: the reload fails, the v2 rules go on
        rule_file.write_text(original + "  - id: [broken\n")
        wait_for(lambda: sample(scrape(lab), 'sentinel_config_reloads_total{result="failure"}')
                 >= 1, 20, "the failed reload")
        assert sample(scrape(lab), "sentinel_config_last_reload_success") == 0
        port = connect_forbidden()
        alert = lab.wait_alert(lab.bawaslu, "lab-forbidden-port",
                               where=lambda a: a["event"]["src_port"] == port)
        assert alert["title"].startswith("Lab v2:")
        assert lab.daemon.proc is not None and lab.daemon.proc.poll() is None
        errors = [e for e in lab.daemon.logs() if e.get("event") == "reload_rejected"]
        assert any("labrules/lab.yaml" in str(e.get("problem")) for e in errors), errors


def test_restart_reports_offline_changes_and_continues_the_chain(tmp_path: Path) -> None:
    """Changes made while sentinel is stopped are reported at start; the journal goes on."""
    needs_lab()
    with Lab(tmp_path / "lab", extra_rules=LAB_RULES) as lab:
        connect_forbidden()
        lab.wait_alert(lab.bawaslu, "lab-forbidden-port")
        before = lab.journal_verify()
        assert before.returncode == 0, before.stdout + before.stderr
        binary = lab.path("opt/tally/bin/tally-server")

        def tamper() -> None:
            binary.write_bytes(b"\x7fELF tally server build 2 (tampered)\n")

        lab.restart(between=tamper)
        alert = lab.wait_alert(
            lab.bawaslu, "tally-binary-tampered",
            where=lambda a: a["event"].get("path") == str(binary))
        assert alert["event"]["offline"] is True
        assert alert["severity"] == "critical"
        assert "content" in alert["event"]["changed"]
        after = lab.journal_verify()
        assert after.returncode == 0, after.stdout + after.stderr
        connect_forbidden()
        wait_for(lambda: len([a for a in lab.alerts_at(lab.bawaslu)
                              if a["rule"] == "lab-forbidden-port"]) >= 2, 20, "a new alert")
        final = lab.journal_verify()
        assert final.returncode == 0, final.stdout + final.stderr


def test_tampered_baseline_is_reported_to_both_targets(tmp_path: Path) -> None:
    """Someone removes the tally binary's record from the baseline while sentinel is
    down: at start the baseline fails its signature and both targets hear of it."""
    needs_lab()
    with Lab(tmp_path / "lab") as lab:
        binary = lab.path("opt/tally/bin/tally-server")

        def tamper() -> None:
            db = sqlite3.connect(lab.state / "baseline.db")
            with db:
                db.execute("DELETE FROM files WHERE path = ?", (os.fsencode(str(binary)),))
            db.close()

        lab.restart(between=tamper)
        for receiver in (lab.bawaslu, lab.ministry):
            alert = lab.wait_alert(receiver, "fim-baseline-invalid")
            assert alert["severity"] == "critical"
            assert alert["event"]["kind"] == "fim.baseline_invalid"
        assert lab.daemon.proc is not None and lab.daemon.proc.poll() is None
