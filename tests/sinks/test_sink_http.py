"""Retry policy pieces: Retry-After parsing, full-jitter backoff bounds, status classes,
and the README's verification snippet against a real signed request."""

from __future__ import annotations

import random
import re
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from sentinel.sinks.alertmanager import api_url
from sentinel.sinks.http import RETRY_AFTER_CAP, Backoff, classify, parse_retry_after, safe_url
from tests.conftest import REPO
from tests.sinks.conftest import SECRET, hook, make_alert, make_config
from tests.sinks.receiver import Receiver, wait_for


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == 30
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0
    assert parse_retry_after("999999", now) == RETRY_AFTER_CAP
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize(("status", "result"), [
    (200, "ok"), (202, "ok"), (204, "ok"), (408, "retry"), (429, "retry"), (500, "retry"),
    (503, "retry"), (301, "fail"), (400, "fail"), (401, "fail"), (404, "fail"), (410, "fail"),
])
def test_status_classes(status: int, result: str) -> None:
    assert classify(status) == result


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    b = Backoff(0.5, 8.0, random.Random(1))
    caps = [0.5, 1, 2, 4, 8, 8, 8]
    delays = [b.next_delay() for _ in caps]
    assert all(0 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not fixed steps
    assert b.next_delay(retry_after=42.0) == 42.0
    b.reset()
    assert b.next_delay() <= 0.5


def test_urls_in_logs_lose_their_path_query_and_credentials() -> None:
    """Receivers put tokens in paths as often as in query strings."""
    assert safe_url("https://h:8443/p/q?token=s3cret#x") == "https://h:8443/..."
    assert safe_url("https://hooks.example/T0/B1/S3CRET") == "https://hooks.example/..."
    assert safe_url("https://u:pw@h/x") == "https://h/..."
    assert safe_url("http://[::1]:9093/") == "http://[::1]:9093/"
    assert safe_url("http://am:9093") == "http://am:9093"


def test_alertmanager_base_url_gets_the_api_path() -> None:
    assert api_url("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert api_url("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert api_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


def test_readme_snippet_verifies_our_signature(tmp_path: Path, start: Any) -> None:
    """The README's few lines of Python accept a real request and reject a changed body."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Verifying a webhook signature"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    ns: dict[str, Any] = {}
    exec(code.group(1), ns)
    with Receiver(secret=SECRET) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        d.submit(make_alert())
        wait_for(lambda: r.count() >= 1)
        req = r.requests[0]
        assert ns["verify"](SECRET, req.headers, req.body) is True
        assert ns["verify"](SECRET, req.headers, req.body.replace(b"high", b"low")) is False
