"""A corrupt spool: moved aside, reported, replaced, and what it had not delivered is
sent again from the journal; `delivery status` says so instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sentinel.cli import main
from sentinel.metrics import Metrics
from sentinel.sinks.build import SPOOL_CORRUPT_RULE
from sentinel.sinks.spool import read_floor
from tests.sinks.conftest import SECRET, hook, make_alert, make_config, metric
from tests.sinks.receiver import Answer, Receiver, Request, wait_for


def corrupt(path: Path) -> None:
    """Garbage over the SQLite header, as a bad disk block or an attacker leaves it."""
    with path.open("r+b") as fh:
        fh.write(b"\xde\xad\xbe\xef not a database " * 4)


def test_a_corrupt_spool_is_moved_aside_alerted_and_refilled_from_the_journal(
        tmp_path: Path, start: Any, deliveries: list[Any], metrics: Metrics) -> None:
    state = tmp_path / "state"
    accept = {"all": False}

    def respond(n: int, req: Request) -> Answer:
        # the first three go through; the rest wait in the spool until phase two
        return Answer(200 if accept["all"] or n < 3 else 503)

    with Receiver(secret=SECRET, respond=respond) as r:
        config = make_config(state, hook("soc", r.url))
        d = start(config)
        sent = [make_alert() for _ in range(3)]
        for a in sent:
            d.submit(a)
        wait_for(lambda: r.delivered_ids() == {a.id for a in sent}, what="the first three")
        waiting = [make_alert() for _ in range(5)]
        for a in waiting:
            d.submit(a)
        spool = state / "spool" / "soc.db"
        wait_for(lambda: read_floor(spool) == 3, what="the lane to record its floor")
        d.close(5.0)
        deliveries.remove(d)
        corrupt(spool)

        accept["all"] = True
        d2 = start(config)
        wait_for(lambda: r.delivered_ids() >= {a.id for a in waiting}, timeout=30,
                 what="the undelivered alerts, from the journal")

        def corrupt_alert() -> list[dict[str, Any]]:
            return [b for b in (req.json() for req in r.delivered())
                    if b.get("rule") == SPOOL_CORRUPT_RULE]

        alerted = wait_for(corrupt_alert, what="the alert about the corrupt spool")
        assert alerted[0]["event"]["target"] == "soc"
        # the floor spares what was delivered before: those went out once only
        ids = [req.headers.get("webhook-id") for req in r.delivered()]
        assert all(ids.count(a.id) == 1 for a in sent)
        assert d2.health()["spool:soc"] is True
    aside = list((state / "spool").glob("soc.db.corrupt-*"))
    assert aside and aside[0].read_bytes().startswith(b"\xde\xad\xbe\xef")
    assert metric(metrics, "sentinel_spool_corrupt_total", target="soc") == 1
    journal = [json.loads(line)["alert"] for line in
               (state / "alerts.jsonl").read_text().splitlines()]
    assert journal[-1]["rule"] == SPOOL_CORRUPT_RULE


def _config_file(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"host: {{name: tally-01, addresses: [10.20.0.10]}}\n"
        f"state_dir: {state}\n"
        "outputs:\n"
        "  webhooks:\n"
        "    - {name: soc, url: 'http://127.0.0.1:9/hook'}\n")
    (state / "spool").mkdir(parents=True)
    return path


def test_delivery_status_names_a_corrupt_spool_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path)
    spool = tmp_path / "state" / "spool" / "soc.db"
    spool.write_bytes(b"\xde\xad\xbe\xef" * 1024)
    assert main(["delivery", "status", "-c", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "soc: UNREADABLE" in out and "corrupt" in out
    assert "Traceback" not in out + err
    assert main(["delivery", "status", "-c", str(config), "--format", "json"]) == 1
    row = json.loads(capsys.readouterr().out)["targets"][0]
    assert "corrupt" in row["problem"]
    assert main(["delivery", "retry", "-c", str(config)]) == 2
    out, err = capsys.readouterr()
    assert "corrupt" in err and "Traceback" not in out + err
    assert spool.read_bytes() == b"\xde\xad\xbe\xef" * 1024, "status must not touch it"


def test_a_spool_from_before_journal_marks_starts_at_the_head(tmp_path: Path, start: Any
                                                                ) -> None:
    """An existing journal and a new target: the new target gets new alerts only, not
    the history (a receiver added today is not flooded with last year)."""
    state = tmp_path / "state"
    d = start(make_config(state))
    for _ in range(4):
        d.submit(make_alert())
    with Receiver(secret=SECRET) as r:
        d.close(5.0)
        d2 = start(make_config(state, hook("soc", r.url)))
        fresh = make_alert()
        d2.submit(fresh)
        wait_for(lambda: r.delivered_ids() == {fresh.id}, what="the new alert")
        assert d2.drain(5.0) == {}
        assert r.count() == 1
