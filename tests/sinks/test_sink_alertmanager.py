"""The alertmanager format against the real Alertmanager, and its re-send/resolve cycle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sentinel.events import parse_time
from sentinel.metrics import Metrics
from sentinel.sinks.spool import Spool
from tests.sinks.am import Alertmanager
from tests.sinks.conftest import hook, make_alert, make_config, metric
from tests.sinks.receiver import Answer, Receiver, Request, free_port, wait_for


def test_alert_reaches_alertmanager_with_labels_annotations_and_times(
        tmp_path: Path, start: Any) -> None:
    with Alertmanager(tmp_path / "am") as am:
        d = start(make_config(tmp_path / "state",
                              hook("am", am.url, format="alertmanager", resolve_after=3.0,
                                   resend_interval=60.0),
                              site="kota-contoh", region="jawa-barat"))
        a = make_alert(severity="critical", description="db reached from 10.20.5.7")
        before = time.time()
        d.submit(a)
        wait_for(lambda: len(am.alerts()) == 1, what="the alert in Alertmanager")
        after = time.time()
        got = am.alerts()[0]
        assert got["labels"] == {"alertname": a.rule, "severity": "critical",
                                 "host": "tally-01", "source": "network",
                                 "site": "kota-contoh", "region": "jawa-barat",
                                 # no incident key on this rule: the group is the rule
                                 "group": a.rule}
        assert got["annotations"]["summary"] == a.title
        assert got["annotations"]["description"] == "db reached from 10.20.5.7"
        assert got["annotations"]["alert_id"] == a.id
        assert got["status"]["state"] == "active"
        assert abs(parse_time(got["startsAt"]) - a.time) < 0.002
        ends = parse_time(got["endsAt"])
        assert before + 3.0 - 0.01 <= ends <= after + 3.0 + 0.01
        # once resolve_after has passed the cluster holds it as resolved, not active
        wait_for(lambda: am.alerts() == [], timeout=15, what="the alert resolved")


def test_every_url_of_a_cluster_gets_every_alert(tmp_path: Path, start: Any,
                                                 metrics: Metrics) -> None:
    """Two Alertmanagers; the second is down at first: the first gets the alert at
    once, the second when it comes up (its own spool and retries)."""
    port2 = free_port()
    with Alertmanager(tmp_path / "am1") as am1:
        d = start(make_config(tmp_path / "state",
                              hook("ha", am1.url, f"http://127.0.0.1:{port2}",
                                   format="alertmanager", resolve_after=60.0)))
        alerts = [make_alert(rule=f"rule-{i}") for i in range(3)]
        for a in alerts:
            d.submit(a)
        wait_for(lambda: len(am1.alerts()) == 3, what="alerts at the first node")
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="ha[1]",
                                result="retry") >= 1, what="the second node retried")
        assert metric(metrics, "sentinel_delivery_queue_depth", target="ha[1]") == 3
        with Alertmanager(tmp_path / "am2", port=port2) as am2:
            wait_for(lambda: len(am2.alerts()) == 3, what="alerts at the second node")
            ids = {x["annotations"]["alert_id"] for x in am2.alerts()}
            assert ids == {a.id for a in alerts}
            assert metric(metrics, "sentinel_deliveries_total", target="ha[0]",
                          result="success") >= 1


def _posts(r: Receiver) -> list[tuple[float, list[dict[str, Any]]]]:
    with r.lock:
        return [(q.wall, q.json()) for q in r.requests]


def test_firing_alert_is_re_sent_then_resolved_with_ends_at(tmp_path: Path,
                                                             start: Any) -> None:
    """While active the alert is re-sent every resend_interval with the same
    endsAt; after resolve_after one last post carries that endsAt in the past."""
    with Receiver() as r:
        d = start(make_config(tmp_path, hook("am", r.url, format="alertmanager",
                                             resend_interval=0.2, resolve_after=1.0)))
        t0 = time.time()
        d.submit(make_alert())
        wait_for(lambda: r.count() >= 1 and Spool(tmp_path / "spool" / "am.db").next_due()
                 is None, timeout=15, what="the resolving post")
        with r.lock:
            posts = list(r.requests)
        assert all(q.path == "/hook/api/v2/alerts" for q in posts)
        ends = {q.json()[0]["endsAt"] for q in posts}
        assert len(ends) == 1, "every post carries the same end"
        end = parse_time(ends.pop())
        assert end >= t0 + 1.0 - 0.01
        *firing, last = posts
        assert len(firing) >= 2, "re-sent at least once while active"
        assert last.wall >= end, "the last post says the alert has ended"


def test_folded_alerts_resolve_at_the_latest_end(tmp_path: Path, start: Any) -> None:
    """Two alerts with the same labels are one Alertmanager alert; the first one's
    expiry must not resolve it while the second is still active."""
    with Receiver() as r:
        d = start(make_config(tmp_path, hook("am", r.url, format="alertmanager",
                                             resend_interval=0.2, resolve_after=1.0)))
        a1 = make_alert()
        d.submit(a1)
        wait_for(lambda: r.count() >= 2, what="a re-send of the first alert")
        a2 = make_alert()
        t2 = time.time()
        d.submit(a2)
        wait_for(lambda: Spool(tmp_path / "spool" / "am.db").next_due() is None, timeout=15,
                 what="resolution")
        posts = _posts(r)
        final_end = parse_time(posts[-1][1][0]["endsAt"])
        assert final_end >= t2 + 1.0 - 0.01
        # no post ever resolved it at the first alert's end
        for wall, items in posts:
            for item in items:
                end = parse_time(item["endsAt"])
                if end <= wall:
                    assert end >= t2 + 1.0 - 0.01, (wall, item)


@pytest.mark.parametrize("status", [500, 503, 408])
def test_a_poison_alert_in_a_batch_does_not_block_the_others(
        tmp_path: Path, start: Any, status: int) -> None:
    """The endpoint answers `status` to any batch holding one alert and takes every
    other: the others all arrive, in few requests, and the poison alert stays queued
    (never dropped) and goes out once the endpoint takes it."""
    poison = make_alert(severity="critical")
    others = [make_alert(severity="critical") for _ in range(40)]
    cured = {"yes": False}

    def respond(n: int, req: Request) -> Answer:
        ids = {item["annotations"]["alert_id"] for item in req.json()}
        return Answer(200 if cured["yes"] or poison.id not in ids else status)

    port = free_port()
    d = start(make_config(tmp_path, hook("am", f"http://127.0.0.1:{port}", format="alertmanager",
                                         resend_interval=3600.0)))
    # nothing listens yet: most or all is spooled before the first request
    for a in [poison, *others]:
        d.submit(a)
    with Receiver(respond=respond, port=port) as r:
        def delivered() -> set[str]:
            return {item["annotations"]["alert_id"] for req in r.delivered()
                    for item in req.json()}

        wait_for(lambda: delivered() >= {a.id for a in others}, timeout=30,
                 what="every other alert past the poison one")
        # halving finds it in about log2(41) refused batches, then a few alone
        assert r.count() < 40, f"{r.count()} requests to get 40 alerts past one poison alert"
        assert poison.id not in delivered()
        # still batches, not one request per alert from then on
        assert max(len(q.json()) for q in r.delivered()) > 1
        # the receiver counts a request before the lane deletes what it carried
        wait_for(lambda: d.lanes()[0].spool.depth == 1, what="only the poison alert queued")
        cured["yes"] = True
        wait_for(lambda: poison.id in delivered(), timeout=30, what="the poison alert, cured")
