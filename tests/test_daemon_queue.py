"""The daemon's event queues: a file event is not held back by a packet flood's backlog."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sentinel.config_reader import load_config
from sentinel.daemon import Daemon
from sentinel.engine import load_rules
from sentinel.events import Event
from sentinel.parts import build_parts

RULES = """
rules:
  - {id: db, title: db, severity: high, kind: net.connection, match: {dst_port: 5432}}
  - {id: bin, title: bin, severity: critical, kind: fim.modified,
     match: {path_tags: tally-binaries}}
"""


def _daemon(tmp: Path, storm: bool) -> Daemon:
    """A daemon on RULES with a journal, its engine thread not started, no sources."""
    (tmp / "rules.yaml").write_text(RULES)
    cfg = tmp / "config.yaml"
    rules = "{paths: [rules.yaml]}" if storm else "{paths: [rules.yaml], storm: {sources: []}}"
    cfg.write_text(f"host: {{name: t, addresses: [10.20.0.10]}}\nstate_dir: {tmp}\n"
                   f"rules: {rules}\n"
                   "outputs: {journal: {path: alerts.jsonl, fsync: none}}\n")
    config = load_config(cfg)
    d = Daemon(cfg, config, load_rules(config))
    d._parts = build_parts(config, d.metrics, d.health)
    return d


def test_a_file_event_is_processed_before_a_queued_packet_flood(tmp_path: Path) -> None:
    """5,000 connection events wait in the queue; a file change emitted after them is
    journaled first (real engine, real journal; only the sources are left out)."""
    d = _daemon(tmp_path, storm=False)
    for i in range(5000):  # the engine is not running yet: they queue up
        d.emit(Event("net.connection", float(i), "t", "network",
                     {"dst_port": 5432, "src_ip": f"198.51.{i // 256}.{i % 256}"}))
    d.emit(Event("fim.modified", 5000.0, "t", "fim",
                 {"path": "/opt/tally/bin/t", "path_tags": ["tally-binaries"]}))
    d._engine_thread.start()
    journal = tmp_path / "alerts.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5001:
            break
        time.sleep(0.1)
    d._stop.set()
    d._engine_thread.join(10)
    d._parts.sink.close(5.0)
    rules = [json.loads(line)["alert"]["rule"] for line in journal.read_text().splitlines()]
    assert len(rules) == 5001
    assert rules[0] == "bin"


def test_a_stop_that_cannot_drain_a_flood_still_reports_what_was_folded(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A flood's backlog outlasts the stop's time budget: the events still queued are
    given up, but the storm summary of those the engine folded is journaled, with their
    true count (before, the engine thread was left running and the counts were lost)."""
    import sentinel.daemon as daemon_module

    d = _daemon(tmp_path, storm=True)
    n = 40_000
    for i in range(n):  # the engine is not running yet: they queue up
        d.emit(Event("net.connection", float(i) / 1000, "t", "network",
                     {"dst_port": 5432, "src_ip": f"198.51.{i // 256 % 256}.{i % 256}"}))
    processed: list[int] = []
    slow = d.engine.process

    def process(ev: Event) -> list[Any]:
        processed.append(1)
        time.sleep(0.0002)  # an engine slower than the flood: the backlog cannot drain
        return slow(ev)
    monkeypatch.setattr(d.engine, "process", process)
    monkeypatch.setattr(daemon_module, "STOP_BUDGET", 4.0)
    d._engine_thread.start()
    d._stop.set()
    assert d._shutdown() == 0
    assert not d._engine_thread.is_alive()
    assert 100 < len(processed) < n  # some were folded, the rest given up
    alerts = [json.loads(line)["alert"] for line in
              (tmp_path / "alerts.jsonl").read_text().splitlines()]
    storm = [a for a in alerts if a.get("storm")]
    mine = [a for a in alerts if a["rule"] == "db"]
    # the last summary is the stop's own (ticks of the wall clock may close earlier
    # storm windows: these events are dated 1970)
    assert storm and mine[-1].get("storm")
    # every event the engine took is counted once: by an alert or by a summary
    assert sum(a["count"] for a in mine) == len(processed)
