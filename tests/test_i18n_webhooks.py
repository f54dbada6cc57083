"""Per-recipient language and local time through real HTTP receivers on loopback.

The site reads Indonesian in Papua (WIT); one json recipient takes the site's
language, another and an Alertmanager-format recipient ask for English. Every
body is signed as sent, and the journal keeps the site's text with UTC time only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sentinel.config import Config, OutputsConfig
from sentinel.config_reader import load_config
from sentinel.engine import Engine, load_rules
from sentinel.events import Event, parse_time
from sentinel.metrics import Metrics
from sentinel.sinks import Delivery, build_delivery
from tests.conftest import REPO
from tests.sinks.conftest import SECRET, hook
from tests.sinks.receiver import Receiver, wait_for

T = parse_time("2024-02-14T06:05:00.123Z")
CONN = {"proto": "tcp", "src_ip": "10.20.0.99", "src_port": 40000, "dst_ip": "10.20.0.10",
        "dst_port": 5432, "direction": "inbound", "src_internal": True, "dst_internal": True,
        "iface": "eth0", "tcp_flags": "S"}
ID_TITLE = ("Basis data penghitungan suara (port 5432) menerima koneksi dari 10.20.0.99, yang"
            " bukan server aplikasi")
EN_TITLE = ("Tally database (port 5432) accepted a connection from 10.20.0.99, which is not the"
            " app server")


@pytest.fixture
def deliver() -> Iterator[list[Delivery]]:
    """Deliveries a test builds; closed at its end, pass or fail."""
    made: list[Delivery] = []
    yield made
    for d in made:
        d.close(5.0)


def send(config: Config, made: list[Delivery]) -> str:
    """Raise the database alert from the pack and hand it to delivery; its id."""
    engine = Engine(load_rules(config), host="tally-01")
    (alert,) = engine.process(Event("net.established", T, "tally-01", "network", dict(CONN)))
    d = build_delivery(config, Metrics(CollectorRegistry()))
    made.append(d)
    d.submit(alert)
    return alert.id


def test_each_recipient_reads_its_language_and_local_time(
        tmp_path: Path, example_secrets: dict[str, str], deliver: list[Delivery]) -> None:
    with Receiver(secret=SECRET) as site_lang, Receiver(secret=SECRET) as english, \
            Receiver() as am:
        config = dataclasses.replace(
            load_config(REPO / "config.example.yaml"), language="id",
            timezone="Asia/Jayapura", state_dir=tmp_path,
            outputs=OutputsConfig(webhooks=(
                hook("bawaslu", site_lang.url),
                hook("intl-soc", english.url, language="en"),
                hook("am", am.url, format="alertmanager", language="en"),
            )))
        alert_id = send(config, deliver)
        wait_for(lambda: site_lang.count() and english.count() and am.count(),
                 what="all three recipients")

        got_id = site_lang.requests[0]
        got_en = english.requests[0]
        # each body is signed exactly as sent (the signature covers the localized body)
        assert got_id.signature_ok is True and got_en.signature_ok is True
        a_id, a_en = got_id.json(), got_en.json()
        assert a_id["title"] == ID_TITLE
        assert a_id["description"].startswith(
            "Basis data penghitungan suara di 10.20.0.10:5432 menerima")
        assert a_en["title"] == EN_TITLE
        assert a_en["description"].startswith("The tally database on 10.20.0.10:5432 accepted")
        assert a_en["language"] == "en"
        for a in (a_id, a_en):
            assert a["id"] == alert_id
            assert a["time"] == "2024-02-14T06:05:00.123Z"
            assert a["time_local"] == "2024-02-14T15:05:00.123+09:00"
            assert a["timezone"] == "Asia/Jayapura"
            assert set(a["i18n"]) == {"en", "id"}

        (item,) = json.loads(am.requests[0].body)
        ann = item["annotations"]
        assert ann["summary"] == EN_TITLE
        assert ann["description"].startswith("The tally database on 10.20.0.10:5432 accepted")
        assert ann["time_local"] == "2024-02-14T15:05:00.123+09:00"
        assert ann["timezone"] == "Asia/Jayapura"
        assert item["startsAt"] == "2024-02-14T06:05:00.123Z"

        deliver[0].close(5.0)
        (line,) = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
        journaled = json.loads(line)["alert"]
        assert journaled["title"] == ID_TITLE  # the site's language
        assert journaled["time"] == "2024-02-14T06:05:00.123Z"
        assert "time_local" not in journaled and "timezone" not in journaled


def test_a_utc_site_without_overrides_sends_the_journal_bytes(
        tmp_path: Path, example_secrets: dict[str, str], deliver: list[Delivery]) -> None:
    """No zone and no language of its own: nothing is added to what was journaled."""
    with Receiver(secret=SECRET) as r:
        config = dataclasses.replace(
            load_config(REPO / "config.example.yaml"), timezone="UTC", state_dir=tmp_path,
            outputs=OutputsConfig(webhooks=(hook("soc", r.url),)))
        send(config, deliver)
        wait_for(lambda: r.count() >= 1, what="the webhook")
        deliver[0].close(5.0)
        (line,) = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
        assert r.requests[0].json() == json.loads(line)["alert"]
        assert r.requests[0].json()["title"] == EN_TITLE
