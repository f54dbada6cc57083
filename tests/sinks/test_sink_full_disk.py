"""A full disk under the state folder: alerts are held and retried, never dropped, and
the state is loud (health, metrics, one log line each way). A real tmpfs of 2 MiB,
filled with a real file, is the disk."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sentinel.config import MetricsConfig
from sentinel.keys import read_key_file
from sentinel.metrics import Metrics
from sentinel.sinks import verify_journal
from sentinel.sinks.metrics_http import MetricsServer
from tests.sinks.conftest import SECRET, hook, make_alert, make_config, metric
from tests.sinks.receiver import Receiver, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write one file until the filesystem says ENOSPC; return it (delete it to free)."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as fh:
        while True:
            try:
                fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    # the last partial block too, so that not even one record fits
    with filler.open("ab", buffering=0) as fh, contextlib.suppress(OSError):
        for _ in range(65536):
            fh.write(b"\0" * 64)
    return filler


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("event") == name]


def test_full_journal_disk_holds_alerts_then_journals_and_delivers_them_all(
        tmp_path: Path, start: Any, metrics: Metrics) -> None:
    with tmpfs(tmp_path / "state") as state, Receiver(secret=SECRET) as r, \
            capture_logs() as logs:
        d = start(make_config(state, hook("soc", r.url)))
        first = make_alert()
        assert d.submit(first) is True
        wait_for(lambda: r.delivered_ids() == {first.id}, what="the first alert")
        filler = fill(state)

        acks: list[tuple[str, int]] = []
        alerts = [make_alert() for _ in range(300)]
        results = [d.submit(a, lambda seq, a=a: acks.append((a.id, seq))) for a in alerts]
        # the journal's last page may still take a few records; then none fits
        journaled = results.index(False)
        assert journaled < 50 and not any(results[journaled:])
        held = len(alerts) - journaled
        assert d.held == held
        assert len(acks) == journaled
        health = d.health()
        assert health["journal"] is False
        assert metric(metrics, "sentinel_journal_held_alerts") == held
        assert metric(metrics, "sentinel_component_up", component="journal") == 0
        time.sleep(2.0)  # the retry thread backs off meanwhile: no busy loop
        failures = metric(metrics, "sentinel_journal_write_failures_total")
        assert 1 <= failures < 30, f"{failures} journal attempts in 2 s: a busy loop"
        assert len(acks) == journaled

        filler.unlink()
        wait_for(lambda: d.held == 0, timeout=20, what="the held alerts to be journaled")
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts}, timeout=30,
                 what="every held alert delivered")
        assert d.health()["journal"] is True
        assert metric(metrics, "sentinel_component_up", component="journal") == 1
        assert metric(metrics, "sentinel_journal_held_alerts") == 0
        # acknowledged in order, each with its own journal record
        assert [i for i, _ in acks] == [a.id for a in alerts]
        assert [s for _, s in acks] == list(range(1, len(alerts) + 1))
    assert len(events(logs, "journal_write_failing")) == 1
    assert len(events(logs, "journal_write_recovered")) == 1
    assert not [e for e in logs if e.get("exc_info")], "a traceback was logged"


def test_journal_survives_the_full_disk_whole(tmp_path: Path, start: Any) -> None:
    """No half record and no record twice: the chain verifies after the spell."""
    with tmpfs(tmp_path / "state") as state:
        config = make_config(state)
        d = start(config)
        for _ in range(5):
            d.submit(make_alert())
        filler = fill(state)
        for _ in range(50):
            d.submit(make_alert())
        filler.unlink()
        wait_for(lambda: d.held == 0, timeout=20, what="the held alerts")
        d.close(5.0)
        key = read_key_file(state / "journal.key", "journal")
        rep = verify_journal(state / "alerts.jsonl", key)
        assert rep.ok, rep
        assert rep.records == 55


def test_full_spool_disk_requeues_from_the_journal(tmp_path: Path, start: Any,
                                                   metrics: Metrics) -> None:
    """The journal can be written but a lane's spool cannot: the lane is down, then
    catches up from the journal and delivers everything, in journal order."""
    state = tmp_path / "state"
    (state / "spool").mkdir(parents=True)
    with tmpfs(state / "spool", "1m") as spool_dir, Receiver(secret=SECRET) as r, \
            capture_logs() as logs:
        d = start(make_config(state, hook("soc", r.url)))
        d.submit(make_alert())
        wait_for(lambda: len(r.delivered_ids()) == 1, what="the first alert")
        filler = fill(spool_dir)
        alerts = [make_alert() for _ in range(100)]
        assert all(d.submit(a) for a in alerts), "the journal itself was writable"
        assert d.health()["spool:soc"] is False
        assert metric(metrics, "sentinel_component_up", component="spool:soc") == 0
        assert metric(metrics, "sentinel_spool_write_failures_total", target="soc") >= 1
        filler.unlink()
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts}, timeout=30,
                 what="every alert after the spool came back")
        wait_for(lambda: d.health()["spool:soc"], what="the spool to count as up")
    assert len(events(logs, "spool_write_failing")) == 1
    assert len(events(logs, "spool_caught_up")) == 1


def test_healthz_is_503_naming_the_journal_while_alerts_are_held(tmp_path: Path, start: Any,
                                                                 metrics: Metrics) -> None:
    with tmpfs(tmp_path / "state") as state:
        d = start(make_config(state))
        server = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), metrics, d.health)
        server.start()
        try:
            filler = fill(state)
            while d.submit(make_alert()):  # the last page of the journal fills up
                pass
            code, body = healthz(server.address)
            assert code == 503 and body["down"] == ["journal"]
            filler.unlink()
            wait_for(lambda: d.held == 0, timeout=20, what="the held alerts")
            assert healthz(server.address)[0] == 200
        finally:
            server.stop()


def healthz(address: tuple[str, int]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_a_reload_hands_the_held_alerts_to_the_new_delivery(tmp_path: Path, start: Any,
                                                            deliveries: list[Any]) -> None:
    with tmpfs(tmp_path / "state") as state, Receiver(secret=SECRET) as r:
        config = make_config(state, hook("soc", r.url))
        old = start(config)
        filler = fill(state)
        alerts = [make_alert() for _ in range(20)]
        for a in alerts:
            old.submit(a)
        held = old.held
        assert held > 0
        new = start(config)  # built beside the old one, as a reload does
        old.close(5.0)
        deliveries.remove(old)
        assert new.held == held
        filler.unlink()
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts}, timeout=30,
                 what="the alerts the old delivery held")


def test_a_start_on_a_full_disk_runs_and_delivers_once_space_returns(
        tmp_path: Path, start: Any, deliveries: list[Any]) -> None:
    """A restart while the disk is full (the spool cannot even be opened) must not
    stop the daemon: it starts, says the spool is down, and catches up later."""
    with tmpfs(tmp_path / "state") as state, Receiver(secret=SECRET) as r:
        config = make_config(state, hook("soc", r.url))
        first = start(config)
        first.submit(make_alert())
        wait_for(lambda: len(r.delivered_ids()) == 1, what="the first alert")
        first.close(5.0)
        deliveries.remove(first)
        filler = fill(state)
        d = start(config)  # raised sqlite3.OperationalError before
        assert d.health()["spool:soc"] is False
        alerts = [make_alert() for _ in range(30)]
        for a in alerts:
            d.submit(a)
        filler.unlink()
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts}, timeout=30,
                 what="the alerts raised while the disk was full")
        wait_for(lambda: all(d.health().values()), what="every part healthy again")
