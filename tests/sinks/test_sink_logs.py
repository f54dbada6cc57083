"""What the log tells an operator about delivery: the journal's path at start, one
line per alert (severity, rule, title, id), and what is still undelivered at stop."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from sentinel import logs
from sentinel.sinks import build_delivery
from tests.sinks.conftest import hook, make_alert, make_config
from tests.sinks.receiver import Receiver


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The delivery log written as the daemon writes it: JSON lines to a file."""
    monkeypatch.delenv("SENTINEL_LOG_LEVEL", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    path = tmp_path / "log.jsonl"
    stream = path.open("w", buffering=1)
    logs.configure(stream=stream)
    yield path
    logs.configure()  # back to stdout before the file closes: later tests log too
    stream.close()


def test_each_alert_is_one_log_line_and_the_journal_path_is_named(
        tmp_path: Path, logged: Path) -> None:
    with Receiver() as r:
        d = build_delivery(make_config(tmp_path, hook("soc", r.url, secret=None)), _m())
        high, low = make_alert(severity="critical"), make_alert(severity="low")
        d.submit(high)
        d.submit(low)
        d.close(5)
    lines = _lines(logged.read_text())
    opened = [x for x in lines if x["event"] == "journal_opened"]
    assert opened and opened[0]["path"] == str(tmp_path / "alerts.jsonl")
    alerts = {x["alert_id"]: x for x in lines if x["event"] == "alert"}
    assert set(alerts) == {high.id, low.id}
    assert alerts[high.id]["level"] == "warning"  # journalctl -p warning shows it
    assert alerts[low.id]["level"] == "info"
    for a in (high, low):
        line = alerts[a.id]
        assert (line["rule"], line["severity"], line["title"]) == (a.rule, a.severity, a.title)
        assert line["targets"] == ["soc"]


def test_what_is_undelivered_at_stop_is_named_per_target(
        tmp_path: Path, logged: Path) -> None:
    with socket.socket() as hole:  # a port nobody answers on
        hole.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{hole.getsockname()[1]}/hook"
        d = build_delivery(make_config(tmp_path, hook("down", dead, secret=None)), _m())
        for _ in range(3):
            d.submit(make_alert())
        d.close(2)
    stops = [x for x in _lines(logged.read_text()) if x["event"] == "undelivered_at_stop"]
    assert len(stops) == 1
    assert stops[0]["pending"] == {"down": 3}
    assert stops[0]["level"] == "warning"


def _m() -> Any:
    from prometheus_client import CollectorRegistry

    from sentinel.metrics import Metrics

    return Metrics(CollectorRegistry())
