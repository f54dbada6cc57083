"""The metrics endpoint: exposition passes promtool, a real Prometheus scrapes it
(plain, and over mTLS with basic auth), auth and client certs are enforced,
/healthz follows the components."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry

from sentinel import __version__
from sentinel.config import MetricsConfig, TLSServerConfig
from sentinel.metrics import Metrics
from sentinel.sinks import metrics_http
from sentinel.sinks.metrics_http import AUTH_CACHE_TTL, MetricsServer
from tests.pki import Pki, make_pki
from tests.prom import Prometheus, check_metrics, populate

USER, PASSWORD = "prometheus", "correct horse battery staple"
# cost 4, the minimum: the tests check behaviour, not bcrypt's slowness
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


class Client:
    """One request per connection, like a scraper; returns status, headers, body."""

    def __init__(self, address: tuple[str, int], ctx: ssl.SSLContext | None = None) -> None:
        self.host, self.port = address
        self.ctx = ctx

    def get(self, path: str, auth: tuple[str, str] | None = None,
            headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        conn: http.client.HTTPConnection
        if self.ctx is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        else:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=10,
                                               context=self.ctx)
        h = dict(headers or {})
        if auth is not None:
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            conn.request(method, path, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    """Start MetricsServers on free loopback ports; stop them all afterwards."""
    started: list[MetricsServer] = []

    def start(config: MetricsConfig | None = None, metrics: Metrics | None = None,
              health: Callable[[], dict[str, bool]] | None = None,
              **kw: object) -> MetricsServer:
        s = MetricsServer(config or MetricsConfig(listen=("127.0.0.1", 0)),
                          metrics or Metrics(CollectorRegistry()),
                          health or (lambda: {"capture": True}), **kw)  # type: ignore[arg-type]
        s.start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_config(pki: Pki, client_ca: bool) -> MetricsConfig:
    return MetricsConfig(listen=("127.0.0.1", 0), tls=TLSServerConfig(
        pki.server_cert, pki.server_key, pki.ca if client_ca else None))


def client_ctx(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


# --- exposition ---------------------------------------------------------------------


def test_exposition_of_a_populated_registry_passes_promtool(serve) -> None:
    m = Metrics(CollectorRegistry())
    populate(m)
    status, headers, body = Client(serve(metrics=m).address).get("/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    rc, out = check_metrics(body)
    assert rc == 0, out
    assert f'sentinel_build_info{{version="{__version__}"}} 1.0' in body.decode()
    assert 'sentinel_alerts_total{rule="tally-db-unauthorized-access",severity="critical"} 1.0' \
        in body.decode()


def test_exposition_of_a_fresh_registry_passes_promtool(serve) -> None:
    status, _, body = Client(serve().address).get("/metrics")
    assert status == 200
    rc, out = check_metrics(body)
    assert rc == 0, out


def test_promtool_helper_rejects_a_bad_exposition() -> None:
    """The helper really reports promtool's complaints (so passing means something)."""
    rc, out = check_metrics("# HELP x_total c\n# TYPE x_total counter\nx_total{a=\"1\"} 1\n"
                            "# HELP BadName no\n# TYPE BadName counter\nBadName 1\n")
    assert rc != 0
    assert "BadName" in out or "x_total" in out


def test_openmetrics_is_served_when_asked_and_gzip_when_accepted(serve) -> None:
    c = Client(serve().address)
    _, headers, body = c.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    _, headers, body = c.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert b"sentinel_build_info" in gzip.decompress(body)


# --- a real Prometheus --------------------------------------------------------------


@pytest.mark.slow
def test_real_prometheus_scrapes_build_info_and_a_moved_counter(serve, tmp_path: Path) -> None:
    m = Metrics(CollectorRegistry())
    host, port = serve(metrics=m).address
    with Prometheus(tmp_path, [f"{host}:{port}"]) as prom:
        got = prom.wait_for("sentinel_build_info", bool)
        assert got == {f'__name__="sentinel_build_info",instance="{host}:{port}",'
                       f'job="sentinel",version="{__version__}"': 1.0}
        m.alerts.labels("tally-db-unauthorized-access", "critical").inc(3)
        prom.wait_for('sentinel_alerts_total{severity="critical"}',
                      lambda r: list(r.values()) == [3.0])


@pytest.mark.slow
def test_real_prometheus_scrapes_over_mtls_with_basic_auth(serve, pki: Pki,
                                                           tmp_path: Path) -> None:
    cfg = MetricsConfig(listen=("127.0.0.1", 0), basic_auth=((USER, HASH),),
                        tls=TLSServerConfig(pki.server_cert, pki.server_key, pki.ca))
    m = Metrics(CollectorRegistry())
    host, port = serve(cfg, metrics=m).address
    pw = tmp_path / "password"
    pw.write_text(PASSWORD)
    scrape = {"scheme": "https",
              "tls_config": {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                             "key_file": str(pki.client_key)},
              "basic_auth": {"username": USER, "password_file": str(pw)}}
    with Prometheus(tmp_path, [f"{host}:{port}"], scrape) as prom:
        prom.wait_for('up{job="sentinel"}', lambda r: list(r.values()) == [1.0])
        m.packets.labels("eth0").inc(42)
        prom.wait_for('sentinel_packets_total{iface="eth0"}',
                      lambda r: list(r.values()) == [42.0])


# --- basic auth ---------------------------------------------------------------------


def test_basic_auth_refuses_missing_wrong_and_unknown_credentials(serve) -> None:
    c = Client(serve(MetricsConfig(listen=("127.0.0.1", 0),
                                   basic_auth=((USER, HASH),))).address)
    for auth in (None, (USER, "wrong"), ("mallory", PASSWORD), (USER, "")):
        for path in ("/metrics", "/healthz", "/nowhere"):
            status, headers, body = c.get(path, auth=auth)
            assert status == 401, (auth, path)
            assert headers["www-authenticate"].startswith('Basic realm="sentinel"')
            assert b"sentinel_" not in body
    status, _, body = c.get("/metrics", auth=(USER, PASSWORD))
    assert status == 200
    assert b"sentinel_build_info" in body


def test_malformed_authorization_headers_are_401_not_errors(serve) -> None:
    c = Client(serve(MetricsConfig(listen=("127.0.0.1", 0),
                                   basic_auth=((USER, HASH),))).address)
    for value in ("Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                  "Bearer abc", "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
                  "Basic " + base64.b64encode(f"{USER}:{'x' * 100}".encode()).decode()):
        status, _, _ = c.get("/metrics", headers={"Authorization": value})
        assert status == 401, value


def test_a_successful_check_is_cached_for_the_ttl_and_failures_never(
        serve, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(metrics_http.bcrypt, "checkpw", counting)
    now = [1000.0]
    c = Client(serve(MetricsConfig(listen=("127.0.0.1", 0), basic_auth=((USER, HASH),)),
                     clock=lambda: now[0]).address)
    assert c.get("/metrics", auth=(USER, PASSWORD))[0] == 200
    assert len(calls) == 1
    now[0] += AUTH_CACHE_TTL - 1
    assert c.get("/metrics", auth=(USER, PASSWORD))[0] == 200
    assert len(calls) == 1, "a scrape within the TTL must not cost a bcrypt round"
    now[0] += 2
    assert c.get("/metrics", auth=(USER, PASSWORD))[0] == 200
    assert len(calls) == 2, "after the TTL the password is checked again"
    for _ in range(2):
        assert c.get("/metrics", auth=(USER, "wrong"))[0] == 401
    assert len(calls) == 4, "every wrong password costs a bcrypt round"
    assert c.get("/metrics", auth=("mallory", "x"))[0] == 401
    assert len(calls) == 5, "an unknown user costs a bcrypt round too (no user enumeration)"


# --- TLS ----------------------------------------------------------------------------


def test_tls_serves_to_a_client_that_trusts_the_ca(serve, pki: Pki) -> None:
    status, _, body = Client(serve(tls_config(pki, client_ca=False)).address,
                             client_ctx(pki)).get("/metrics")
    assert status == 200
    assert b"sentinel_build_info" in body


def test_plain_http_to_a_tls_endpoint_gets_no_metrics(serve, pki: Pki) -> None:
    address = serve(tls_config(pki, client_ca=False)).address
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        status, _, body = Client(address).get("/metrics")
        assert b"sentinel_build_info" not in body
        pytest.fail(f"plain HTTP got an HTTP answer {status}")


def refused(address: tuple[str, int], ctx: ssl.SSLContext) -> bool:
    """True when the TLS connection is refused before any HTTP answer."""
    try:
        Client(address, ctx).get("/metrics")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError,
            http.client.RemoteDisconnected):
        return True
    return False


def test_mtls_refuses_a_client_without_a_certificate(serve, pki: Pki) -> None:
    assert refused(serve(tls_config(pki, client_ca=True)).address, client_ctx(pki))


def test_mtls_refuses_a_certificate_from_another_ca(serve, pki: Pki) -> None:
    address = serve(tls_config(pki, client_ca=True)).address
    assert refused(address, client_ctx(pki, pki.rogue_cert, pki.rogue_key))


def test_mtls_serves_a_client_with_a_certificate_from_the_ca(serve, pki: Pki) -> None:
    address = serve(tls_config(pki, client_ca=True)).address
    status, _, _ = Client(address, client_ctx(pki, pki.client_cert, pki.client_key)).get(
        "/metrics")
    assert status == 200


def test_a_renewed_certificate_is_used_without_a_restart(serve, tmp_path: Path) -> None:
    old = make_pki(tmp_path / "old")
    new = make_pki(tmp_path / "new")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    shutil.copy(old.server_cert, cert)
    shutil.copy(old.server_key, key)
    address = serve(MetricsConfig(listen=("127.0.0.1", 0),
                                  tls=TLSServerConfig(cert, key))).address
    assert Client(address, client_ctx(old)).get("/metrics")[0] == 200
    # a renewal that does not load (a half-written file) keeps the old certificate
    (live / "tmp").write_text("-----BEGIN CERTIFICATE-----\ntruncated")
    os.replace(live / "tmp", cert)
    assert Client(address, client_ctx(old)).get("/metrics")[0] == 200
    # the renewal completes: installed the way certificate tools do, by rename
    for src, dst in ((new.server_key, key), (new.server_cert, cert)):
        shutil.copy(src, live / "tmp")
        os.replace(live / "tmp", dst)
    assert Client(address, client_ctx(new)).get("/metrics")[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(address, client_ctx(old)).get("/metrics")


def test_a_bad_key_file_is_a_clear_oserror(tmp_path: Path, pki: Pki) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    s = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0),
                                    tls=TLSServerConfig(pki.server_cert, bad)),
                      Metrics(CollectorRegistry()), dict)
    with pytest.raises(OSError, match=r"metrics endpoint TLS: cannot load cert_file .* with"
                                      r" key_file .*bad\.key"):
        s.start()


# --- /healthz and paths -------------------------------------------------------------


def test_healthz_is_200_when_every_component_is_up(serve) -> None:
    c = Client(serve(health=lambda: {"capture": True, "watcher": True,
                                     "delivery": True}).address)
    status, headers, body = c.get("/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "components": {
        "capture": True, "watcher": True, "delivery": True}}


def test_healthz_is_503_naming_the_components_that_are_down(serve) -> None:
    state = {"capture": True, "watcher": True, "delivery": True}
    c = Client(serve(health=lambda: dict(state)).address)
    assert c.get("/healthz")[0] == 200
    state["watcher"] = False
    state["delivery"] = False
    status, _, body = c.get("/healthz")
    assert status == 503
    report = json.loads(body)
    assert report["status"] == "down"
    assert report["down"] == ["delivery", "watcher"]
    assert report["components"]["capture"] is True
    state.update(watcher=True, delivery=True)
    assert c.get("/healthz")[0] == 200


def test_healthz_is_503_when_the_health_check_itself_fails(serve) -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("boom")

    status, _, body = Client(serve(health=broken).address).get("/healthz")
    assert status == 503
    assert json.loads(body)["status"] == "error"


def test_other_paths_are_404_and_head_has_no_body(serve) -> None:
    c = Client(serve().address)
    for path in ("/", "/metrics/x", "/favicon.ico", "/healthz/../x"):
        assert c.get(path)[0] == 404, path
    status, headers, body = c.get("/metrics", method="HEAD")
    assert status == 200
    assert int(headers["content-length"]) > 0
    assert body == b""
    assert c.get("/metrics", method="POST")[0] == 501


def test_the_server_header_does_not_reveal_versions(serve) -> None:
    _, headers, _ = Client(serve().address).get("/metrics")
    assert headers["server"] == "sentinel"


# --- lifecycle ----------------------------------------------------------------------


def test_address_reports_the_port_the_kernel_chose(serve) -> None:
    s = serve()
    host, port = s.address
    assert host == "127.0.0.1"
    assert port > 0
    with socket.create_connection((host, port), timeout=5):
        pass


def test_start_on_a_taken_port_raises_a_clear_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = MetricsServer(MetricsConfig(listen=("127.0.0.1", port)),
                          Metrics(CollectorRegistry()), dict)
        with pytest.raises(OSError, match=rf"cannot listen on 127\.0\.0\.1:{port} "
                                          r"\(outputs\.metrics\.listen\): Address already in use"):
            s.start()


def test_ipv6_loopback_listen_works(serve) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    s = serve(MetricsConfig(listen=("::1", 0)))
    assert s.address[0] == "::1"
    assert Client(("::1", s.address[1])).get("/metrics")[0] == 200


def test_threads_are_named_and_gone_after_stop(serve) -> None:
    seen: list[str] = []

    def health() -> dict[str, bool]:
        seen.append(threading.current_thread().name)
        return {}

    s = serve(health=health)
    assert s.alive()
    assert "metrics-http" in [t.name for t in threading.enumerate()]
    assert Client(s.address).get("/healthz")[0] == 200
    assert seen and seen[0].startswith("metrics-http-")
    address = s.address
    s.stop()
    assert not s.alive()
    assert "metrics-http" not in [t.name for t in threading.enumerate()]
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2).close()
    s.stop()  # a second stop is harmless
