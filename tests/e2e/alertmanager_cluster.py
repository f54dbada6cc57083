"""Real Alertmanager nodes (Debian package ``prometheus-alertmanager``) on loopback,
alone or gossiping as an HA cluster, and a real webhook receiver behind them.

Used by the fleet tests: ``tests/e2e/test_fleet.py`` (a three-node cluster) and
``tests/deploy/test_fleet_configs.py`` (the example config in one node).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.support import free_port

BINARY = "prometheus-alertmanager"
AMTOOL = "amtool"
#: Debian installs both here; the fallback is for a PATH without /usr/bin.
_DEBIAN_BIN = Path("/usr/bin")

#: Gossip and failure detection sped up so a loopback cluster converges in
#: well under a second; peer_timeout is how long each node waits per position
#: before it sends a notification the node(s) ahead of it have not logged. The
#: gossip of that log must cross within it even on a loaded 2-core machine (at
#: 2 s a busy run saw the second survivor of a kill notify too), hence 5 s.
PEER_TIMEOUT = 5.0
_CLUSTER_FLAGS = (
    f"--cluster.peer-timeout={PEER_TIMEOUT:g}s",
    "--cluster.settle-timeout=1s",
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
    "--cluster.probe-interval=200ms",
    "--cluster.probe-timeout=100ms",
    "--cluster.reconnect-interval=1s",
)


def binary(name: str) -> str:
    """The binary's path, or skip (CI installs prometheus-alertmanager, so CI never skips)."""
    path = shutil.which(name) or (str(_DEBIAN_BIN / name)
                                  if (_DEBIAN_BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package prometheus-alertmanager)")
    return path




def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    return support.wait_for(probe, timeout, what, interval=0.1)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


class Node:
    """One Alertmanager process; ``peers`` are the cluster addresses of the others
    (an empty ``cluster_port`` runs it without HA)."""

    def __init__(self, workdir: Path, config: str, cluster_port: int | None = None,
                 peers: tuple[int, ...] = ()) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cluster_port = cluster_port
        cluster = ([f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                    f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                    *(f"--cluster.peer=127.0.0.1:{p}" for p in peers), *_CLUSTER_FLAGS]
                   if cluster_port else ["--cluster.listen-address="])
        self.argv = [binary(BINARY), f"--config.file={self.config}",
                     f"--storage.path={workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                     *cluster]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = (self.dir / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return (self.dir / "alertmanager.log").read_text(errors="replace")[-3000:]

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"alertmanager on {self.port} exited:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = get_json(f"{self.url}/api/v2/status")
        return data

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert this node holds (active, suppressed or unprocessed)."""
        data: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/alerts")
        return data

    def post(self, alerts: list[dict[str, Any]]) -> None:
        req = urllib.request.Request(f"{self.url}/api/v2/alerts", json.dumps(alerts).encode(),
                                     {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200

    def kill(self) -> None:
        """SIGKILL: a crashed node, no goodbye to its peers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self._log.close()


class Cluster:
    """``with Cluster(tmp, config, 3) as nodes:`` — started, peered and settled."""

    def __init__(self, workdir: Path, config: str, size: int = 3) -> None:
        ports = [free_port() for _ in range(size)]
        self.nodes = [Node(workdir / f"am{i}", config, p, tuple(q for q in ports if q != p))
                      for i, p in enumerate(ports)]

    def __enter__(self) -> list[Node]:
        try:
            for n in self.nodes:
                n.start()
            for n in self.nodes:
                wait_for(f"alertmanager on {n.port} ready", n.ready)
            size = len(self.nodes)
            for n in self.nodes:
                wait_for(f"alertmanager on {n.port} to see {size} peers, settled",
                         lambda n=n: n.status()["cluster"]["status"] == "ready"
                         and len(n.status()["cluster"]["peers"]) == size)
        except BaseException:
            self.__exit__()
            raise
        return self.nodes

    def __exit__(self, *exc: object) -> None:
        for n in self.nodes:
            n.stop()

    @staticmethod
    def sender(nodes: list[Node]) -> Node:
        """The node at position 0: the one that notifies first (the others wait
        position x peer_timeout, then send only what its log does not hold)."""
        names = sorted(p["name"] for p in nodes[0].status()["cluster"]["peers"])
        for n in nodes:
            if n.status()["cluster"]["name"] == names[0]:
                return n
        pytest.fail("no node is at position 0")


class WebhookReceiver:
    """A real HTTP server on loopback recording every Alertmanager notification.

    ``notifications`` holds ``(path, payload)`` in arrival order and
    ``authorizations`` the ``Authorization`` header of each; it always answers 200.
    """

    def __init__(self) -> None:
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.notifications.append((self.path, json.loads(body)))
                    outer.authorizations.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="fleet-webhook-receiver", daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.notifications)

    def firing(self, path: str | None = None) -> list[dict[str, str]]:
        """Labels of every firing alert in every notification (to ``path`` if given)."""
        return [a["labels"] for p, n in self.received() if path is None or p == path
                for a in n["alerts"] if a["status"] == "firing"]

