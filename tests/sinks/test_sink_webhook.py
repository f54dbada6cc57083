"""The json webhook against a real HTTP server: signatures, retries, outages, failures."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

from sentinel.config import Secret
from sentinel.metrics import Metrics
from sentinel.sinks.journal import alert_json
from sentinel.sinks.spool import Spool
from tests.sinks.conftest import SECRET, hook, make_alert, make_config, metric
from tests.sinks.receiver import Answer, Receiver, free_port, wait_for


def test_every_request_is_signed_verifiably_and_carries_the_alert(
        tmp_path: Path, start: Any, metrics: Metrics) -> None:
    """An independent Standard Webhooks implementation accepts every signature;
    the body is the alert exactly as journaled; webhook-id is the alert id."""
    with Receiver(secret=SECRET) as r:
        d = start(make_config(tmp_path, hook("soc", r.url, headers=(("X-Site", "kota"),))))
        alerts = [make_alert() for _ in range(20)]
        for a in alerts:
            d.submit(a)
        wait_for(lambda: r.count() >= 20, what="20 webhooks")
        by_id = {req.headers["webhook-id"]: req for req in r.requests}
        assert set(by_id) == {a.id for a in alerts}
        for a in alerts:
            req = by_id[a.id]
            assert req.signature_ok is True
            assert req.body == alert_json(a)
            assert req.json()["id"] == a.id
            assert req.headers["x-site"] == "kota"
            assert req.headers["content-type"] == "application/json"
        wait_for(lambda: metric(metrics, "sentinel_delivery_queue_depth", target="soc") == 0,
                 what="queue depth back to 0")
        assert metric(metrics, "sentinel_deliveries_total", target="soc", result="success") == 20
        assert metric(metrics, "sentinel_component_up", component="delivery:soc") == 1


def test_a_wrong_secret_fails_independent_verification(tmp_path: Path, start: Any) -> None:
    """The receiver's check is real: a sender with another secret is rejected."""
    with Receiver(secret=SECRET) as r:
        other = Secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "test")
        d = start(make_config(tmp_path, hook("soc", r.url, secret=other)))
        d.submit(make_alert())
        wait_for(lambda: r.count() >= 1)
        assert r.requests[0].signature_ok is False


def test_retries_keep_the_id_and_re_sign(tmp_path: Path, start: Any, metrics: Metrics) -> None:
    """5xx and 408 are retried; every attempt has the same webhook-id and a valid signature."""
    codes = [503, 500, 408, 200]
    with Receiver(secret=SECRET, respond=lambda n, req: Answer(codes[min(n, 3)])) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: r.count() >= 4, what="four attempts")
        assert [req.headers["webhook-id"] for req in r.requests] == [a.id] * 4
        assert all(req.signature_ok for req in r.requests)
        assert metric(metrics, "sentinel_deliveries_total", target="soc", result="retry") == 3
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                                result="success") == 1)


def test_outage_then_recovery_delivers_all_1000(tmp_path: Path, start: Any,
                                               metrics: Metrics) -> None:
    """The receiver is down (connection refused) while 1,000 alerts are produced;
    when it comes up every one arrives."""
    port = free_port()
    d = start(make_config(tmp_path, hook("soc", f"http://127.0.0.1:{port}/hook",
                                         retry_initial=0.05, retry_max=0.3),
                          fsync="none"))
    alerts = [make_alert() for _ in range(1000)]
    for a in alerts:
        d.submit(a)
    wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                            result="retry") >= 3, what="retries while down")
    assert metric(metrics, "sentinel_delivery_queue_depth", target="soc") == 1000
    wait_for(lambda: metric(metrics, "sentinel_delivery_oldest_pending_seconds",
                            target="soc") > 0, what="oldest-pending age")
    with Receiver(secret=SECRET, port=port) as r:
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts}, timeout=60,
                 what="all 1,000 alerts")
        assert all(req.signature_ok for req in r.requests)
        wait_for(lambda: metric(metrics, "sentinel_delivery_queue_depth", target="soc") == 0)
    assert d.journal_head()[0] == 1000


def test_dead_target_does_not_delay_a_live_one(tmp_path: Path, start: Any,
                                               metrics: Metrics) -> None:
    """One endpoint accepts connections and never answers; the other gets every
    alert while the dead one's first request is still hanging."""
    with socket.socket() as hole, Receiver(secret=SECRET) as live:
        hole.bind(("127.0.0.1", 0))
        hole.listen(100)
        dead_url = f"http://127.0.0.1:{hole.getsockname()[1]}/hook"
        d = start(make_config(tmp_path, hook("dead", dead_url, timeout=120.0),
                              hook("live", live.url)))
        alerts = [make_alert() for _ in range(50)]
        for a in alerts:
            d.submit(a)
        wait_for(lambda: live.ids() >= {a.id for a in alerts}, timeout=30,
                 what="the live target's alerts")
        # the dead lane is still stuck in its first attempt: nothing resolved there
        assert metric(metrics, "sentinel_deliveries_total", target="dead", result="success") == 0
        assert metric(metrics, "sentinel_deliveries_total", target="dead", result="retry") == 0
        assert metric(metrics, "sentinel_delivery_queue_depth", target="dead") == 50


def test_retry_after_seconds_is_honoured(tmp_path: Path, start: Any) -> None:
    """429 with Retry-After: 1 delays the next attempt by a second, though the
    configured backoff would retry within 50 ms."""
    def respond(n: int, req: object) -> Answer:
        return Answer(429, (("Retry-After", "1"),)) if n == 0 else Answer(200)
    with Receiver(secret=SECRET, respond=respond) as r:
        d = start(make_config(tmp_path, hook("soc", r.url, retry_initial=0.01,
                                             retry_max=0.05)))
        d.submit(make_alert())
        wait_for(lambda: r.count() >= 2)
        assert r.requests[1].at - r.requests[0].at >= 0.95


def test_permanent_4xx_is_dead_lettered_and_counted(tmp_path: Path, start: Any,
                                                    metrics: Metrics) -> None:
    """410 for one alert: tried once, kept aside, counted as failed; the next
    alerts are still delivered."""
    bad = make_alert()

    def respond(n: int, req: Any) -> Answer:
        return Answer(410) if req.headers["webhook-id"] == bad.id else Answer(204)
    with Receiver(secret=SECRET, respond=respond) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        good = [make_alert() for _ in range(3)]
        d.submit(bad)
        for a in good:
            d.submit(a)
        wait_for(lambda: r.delivered_ids() >= {a.id for a in good})
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                                result="failed") == 1)
        assert [q.headers["webhook-id"] for q in r.requests].count(bad.id) == 1
        assert metric(metrics, "sentinel_deliveries_total", target="soc", result="retry") == 0
    d.close(5)
    dead = Spool(tmp_path / "spool" / "soc.db").dead()
    assert dead == [(bad.id, 410, "HTTP 410")]


def test_an_alert_the_receiver_keeps_refusing_does_not_hold_back_the_rest(
        tmp_path: Path, start: Any, metrics: Metrics) -> None:
    """The receiver answers 500 to one alert, always: after a few attempts it is retried
    behind the others, which arrive; it stays pending (never dropped) and is retried."""
    stuck = make_alert()

    def respond(n: int, req: Any) -> Answer:
        return Answer(500) if req.headers["webhook-id"] == stuck.id else Answer(200)
    with Receiver(secret=SECRET, respond=respond) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        d.submit(stuck)
        rest = [make_alert() for _ in range(5)]
        for a in rest:
            d.submit(a)
        wait_for(lambda: r.delivered_ids() >= {a.id for a in rest}, timeout=30,
                 what="the alerts behind the refused one")
        wait_for(lambda: [q.headers["webhook-id"] for q in r.requests].count(stuck.id) >= 4,
                 timeout=30, what="the refused alert to be retried after the others")
        assert stuck.id not in r.delivered_ids()
        assert metric(metrics, "sentinel_deliveries_total", target="soc", result="failed") == 0
    d.close(5)
    pending = Spool(tmp_path / "spool" / "soc.db").page(10)
    assert [p.id for p in pending] == [stuck.id]


def test_slow_receiver_times_out_and_is_retried(tmp_path: Path, start: Any,
                                               metrics: Metrics) -> None:
    """A receiver slower than the timeout counts as a retriable failure."""
    release = threading.Event()

    def respond(n: int, req: object) -> Answer:
        return Answer(200, delay=3.0) if n < 2 and not release.is_set() else Answer(200)
    with Receiver(secret=SECRET, respond=respond) as r:
        d = start(make_config(tmp_path, hook("soc", r.url, timeout=0.3)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: r.count() >= 3, what="a third attempt after two timeouts")
        release.set()
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                                result="success") == 1)
        assert metric(metrics, "sentinel_deliveries_total", target="soc", result="retry") == 2
        assert {q.headers["webhook-id"] for q in r.requests} == {a.id}


def test_undelivered_alerts_survive_close_and_go_on_restart(tmp_path: Path, start: Any,
                                                            metrics: Metrics) -> None:
    """close() leaves the backlog spooled; the next Delivery sends it first."""
    port = free_port()
    config = make_config(tmp_path, hook("soc", f"http://127.0.0.1:{port}/hook"))
    d = start(config)
    alerts = [make_alert() for _ in range(30)]
    for a in alerts:
        d.submit(a)
    d.close(5)
    with Receiver(secret=SECRET, port=port) as r:
        start(config, Metrics())
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts})


def test_no_secret_in_logs_or_spool_names(tmp_path: Path, start: Any, capsys: Any) -> None:
    """Logs name the target and the URL's host, never a token in its path or query, nor
    the secret."""
    port = free_port()
    d = start(make_config(tmp_path, hook("soc", f"http://127.0.0.1:{port}/hook/T0K3N?token=abc123")))
    d.submit(make_alert())
    d.close(5)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "abc123" not in text
    assert "T0K3N" not in text
    assert SECRET[6:] not in text
    assert f"127.0.0.1:{port}/..." in text
    journal = (tmp_path / "alerts.jsonl").read_text()
    assert json.loads(journal.splitlines()[0])["seq"] == 0


def test_reload_overlap_shares_one_journal_chain_and_loses_nothing(
        tmp_path: Path, start: Any, metrics: Metrics) -> None:
    """A reload builds the new Delivery before closing the old; alerts submitted to
    either land in one intact chain and are all delivered."""
    from sentinel.keys import read_key_file
    from sentinel.sinks import verify_journal

    port = free_port()
    config = make_config(tmp_path, hook("soc", f"http://127.0.0.1:{port}/hook"))
    old = start(config)
    first = [make_alert() for _ in range(5)]
    for a in first:
        old.submit(a)
    new = start(config)
    late = make_alert()
    old.submit(late)  # the old one still takes alerts until it is closed
    old.close(5)
    rest = [make_alert() for _ in range(5)]
    for a in rest:
        new.submit(a)
    with Receiver(secret=SECRET, port=port) as r:
        wait_for(lambda: r.delivered_ids() >= {a.id for a in [*first, late, *rest]})
    new.close(5)
    key = read_key_file(tmp_path / "journal.key", "journal")
    rep = verify_journal(tmp_path / "alerts.jsonl", key)
    assert rep.ok and rep.records == 11


def test_a_second_process_cannot_append_to_the_same_journal(tmp_path: Path,
                                                            start: Any) -> None:
    """Two writers would fork the chain: the journal is locked to one process."""
    import subprocess
    import sys

    import pytest

    from sentinel.sinks import JournalError
    from sentinel.sinks.journal import Journal
    from tests.conftest import REPO

    start(make_config(tmp_path))
    code = ("import sys; from pathlib import Path; from sentinel.sinks.journal import Journal\n"
            "try:\n    Journal(Path(sys.argv[1]), b'k' * 32)\n"
            "except Exception as e:\n    print(e); sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "alerts.jsonl")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 3 and "in use by another sentinel process" in proc.stdout
    with pytest.raises(JournalError, match="in use"):
        Journal(tmp_path / "alerts.jsonl", b"k" * 32)


def test_an_internal_fault_is_counted_and_the_lane_goes_on(
        tmp_path: Path, start: Any, metrics: Metrics, monkeypatch: Any) -> None:
    """An unexpected exception inside the worker loop is counted and logged; the
    worker survives and the alert is still delivered."""
    from sentinel.sinks.webhook import JsonLane

    real = JsonLane.post
    calls = []

    def flaky(self: JsonLane, records: Any, now: float) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected fault")
        return real(self, records, now)
    monkeypatch.setattr(JsonLane, "post", flaky)
    with Receiver(secret=SECRET) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: a.id in r.delivered_ids(), what="delivery after the fault")
        assert metric(metrics, "sentinel_deliveries_total", target="soc", result="error") == 1
        assert d.alive()
