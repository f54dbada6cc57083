"""A target's ``proxy``: every request goes through a real HTTP proxy (tinyproxy on
loopback), plain HTTP and HTTPS through CONNECT with the receiver's certificate still
verified; proxies from the environment are never used; proxy credentials come from
the environment and never show in logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.metrics import Metrics
from tests.pki import Pki, make_pki
from tests.sinks.conftest import SECRET, hook, make_alert, make_config, metric
from tests.sinks.receiver import Receiver, free_port, server_tls, wait_for


class Tinyproxy:
    """tinyproxy on 127.0.0.1, optionally with basic auth; its log says what it carried."""

    def __init__(self, folder: Path, auth: tuple[str, str] | None = None) -> None:
        binary = shutil.which("tinyproxy")
        if binary is None:
            pytest.skip("tinyproxy is not installed (CI installs it)")
        self.port = free_port()
        self.log = folder / "tinyproxy.log"
        conf = folder / "tinyproxy.conf"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 20",
                 f"LogFile \"{self.log}\"", "LogLevel Connect", "Allow 127.0.0.1",
                 "DisableViaHeader Yes"]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        conf.write_text("\n".join(lines) + "\n")
        # -d: stay in the foreground, so the test owns the process
        self.proc = subprocess.Popen([binary, "-d", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, what="tinyproxy listening")
        self.url = f"http://127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def carried(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    p = Tinyproxy(tmp_path)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_plain_http_goes_through_the_proxy(tmp_path: Path, start: Any, proxy: Tinyproxy,
                                           metrics: Metrics) -> None:
    with Receiver(secret=SECRET) as r:
        d = start(make_config(tmp_path, hook("soc", r.url, proxy=proxy.url)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: a.id in r.delivered_ids(), what="the alert through the proxy")
        assert r.requests[0].signature_ok
    assert f"127.0.0.1:{r.port}" in proxy.carried()


def test_https_is_tunnelled_and_the_receiver_still_verified(
        tmp_path: Path, start: Any, proxy: Tinyproxy, pki: Pki, metrics: Metrics) -> None:
    """CONNECT through the proxy; TLS is end to end: the proxy sees no alert, and a
    receiver whose certificate does not verify gets nothing."""
    tls = server_tls(pki.server_cert, pki.server_key)
    with Receiver(secret=SECRET, tls=tls) as r:
        d = start(make_config(tmp_path, hook("soc", r.url, proxy=proxy.url, ca_file=pki.ca),
                              hook("unverified", r.url, proxy=proxy.url)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                                result="success") == 1, what="the alert through the tunnel")
        wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="unverified",
                                result="retry") >= 1, what="the unverified target refused")
        assert r.count() == 1
    carried = proxy.carried()
    assert "CONNECT" in carried and f"127.0.0.1:{r.port}" in carried
    assert a.id not in carried


def test_environment_proxies_are_ignored(tmp_path: Path, start: Any, proxy: Tinyproxy,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set in the daemon's environment never sees alerts: only ``proxy`` does."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Receiver(secret=SECRET) as r:
        d = start(make_config(tmp_path, hook("soc", r.url)))
        a = make_alert()
        d.submit(a)
        wait_for(lambda: a.id in r.delivered_ids())
    time.sleep(0.2)
    assert f"127.0.0.1:{r.port}" not in proxy.carried()


def test_proxy_credentials_from_the_environment(tmp_path: Path, capsys: Any) -> None:
    """A proxy that wants basic auth gets it from proxy_auth_env; without it, 407 keeps
    the alert spooled. The daemon's log never shows the password."""
    from sentinel.config_reader import load_config
    from sentinel.sinks import build_delivery

    p = Tinyproxy(tmp_path, auth=("sentinel", "pr0xy-pw"))
    try:
        with Receiver(secret=SECRET) as r:
            cfg = tmp_path / "config.yaml"
            state = tmp_path / "state"
            cfg.write_text(
                f"host: {{name: tally-01, addresses: [10.20.0.10]}}\nstate_dir: {state}\n"
                "outputs:\n  webhooks:\n"
                f"    - {{name: soc, url: '{r.url}', proxy: '{p.url}',"
                " proxy_auth_env: TEST_PROXY_AUTH, secret_env: TEST_SOC_SECRET,"
                " retry: {initial: 100ms, max: 200ms}}\n")
            env = {"TEST_PROXY_AUTH": "sentinel:pr0xy-pw", "TEST_SOC_SECRET": SECRET}
            os.environ.update(env)
            try:
                config = load_config(cfg)
            finally:
                for k in env:
                    os.environ.pop(k, None)
            m = Metrics()
            d = build_delivery(config, m)
            try:
                a = make_alert()
                d.submit(a)
                wait_for(lambda: a.id in r.delivered_ids(), what="delivery with proxy auth")
            finally:
                d.close(5)
        out = capsys.readouterr()
        assert "pr0xy-pw" not in out.out + out.err
    finally:
        p.stop()


def test_a_proxy_that_wants_credentials_keeps_the_alert_spooled(
        tmp_path: Path, start: Any, metrics: Metrics) -> None:
    """407 is the proxy's answer, not the receiver's: retried, never a dead letter."""
    p = Tinyproxy(tmp_path, auth=("sentinel", "pr0xy-pw"))
    try:
        with Receiver(secret=SECRET) as r:
            d = start(make_config(tmp_path, hook("soc", r.url, proxy=p.url)))
            d.submit(make_alert())
            wait_for(lambda: metric(metrics, "sentinel_deliveries_total", target="soc",
                                    result="retry") >= 2, what="407 retried")
            assert r.count() == 0
            assert metric(metrics, "sentinel_deliveries_total", target="soc",
                          result="failed") == 0
            assert metric(metrics, "sentinel_delivery_queue_depth", target="soc") == 1
    finally:
        p.stop()


def test_proxy_setting_is_checked_at_its_position(tmp_path: Path) -> None:
    from sentinel.config_reader import load_config
    from sentinel.located import ProblemError

    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"host: {{name: t, addresses: [10.20.0.10]}}\nstate_dir: {tmp_path}\n"
        "outputs:\n  webhooks:\n"
        "    - {name: a, url: 'https://soc.example/h', proxy: 'http://u:pw@proxy:3128'}\n"
        "    - {name: b, url: 'https://soc.example/h', proxy: 'proxy:3128'}\n"
        "    - {name: c, url: 'https://soc.example/h', proxy_auth_env: X}\n")
    with pytest.raises(ProblemError) as err:
        load_config(cfg)
    text = str(err.value.render("text"))
    assert "config.yaml:5:" in text and "credentials in the proxy URL are not allowed" in text
    assert "config.yaml:6:" in text and "is not a proxy address; valid: http://HOST:PORT" in text
    assert "config.yaml:7:" in text and "proxy_auth_env goes with proxy" in text
