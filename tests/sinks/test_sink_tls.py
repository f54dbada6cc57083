"""HTTPS delivery: verification on by default, a custom CA, client certificates (mTLS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sentinel.metrics import Metrics
from tests.pki import Pki, make_pki
from tests.sinks.conftest import SECRET, hook, make_alert, make_config, metric
from tests.sinks.receiver import Receiver, server_tls, wait_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_https_with_the_configured_ca_delivers(tmp_path: Path, start: Any, pki: Pki) -> None:
    with Receiver(secret=SECRET, tls=server_tls(pki.server_cert, pki.server_key)) as r:
        d = start(make_config(tmp_path, hook("soc", r.url, ca_file=pki.ca)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: a.id in r.delivered_ids())
        assert r.requests[0].signature_ok


def test_unknown_ca_is_refused_by_default(tmp_path: Path, start: Any, pki: Pki,
                                          metrics: Metrics) -> None:
    """Without the CA the self-signed server fails verification: nothing is sent,
    the alert stays spooled and is retried."""
    with Receiver(secret=SECRET, tls=server_tls(pki.server_cert, pki.server_key)) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        d.submit(make_alert())
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                                result="retry") >= 2, what="TLS failures retried")
        assert r.count() == 0
        assert metric(metrics, "sentinel_delivery_queue_depth", target="soc") == 1


def test_mtls_needs_the_client_certificate(tmp_path: Path, start: Any, pki: Pki,
                                           metrics: Metrics) -> None:
    """A server that requires a client certificate gets nothing from a target
    without one, and everything from a target with one."""
    tls = server_tls(pki.server_cert, pki.server_key, client_ca=pki.ca)
    with Receiver(secret=SECRET, tls=tls) as r:
        d = start(make_config(
            tmp_path,
            hook("anon", r.url, ca_file=pki.ca),
            hook("mtls", r.url, ca_file=pki.ca, client_cert=pki.client_cert,
                 client_key=pki.client_key),
        ))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="mtls",
                                result="success") == 1)
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="anon",
                                result="retry") >= 2, what="the anonymous target refused")
        assert metric(metrics, "sentinel_deliveries_total", target="anon", result="success") == 0
        assert r.delivered_ids() == {a.id}
        assert len(r.requests) == 1
