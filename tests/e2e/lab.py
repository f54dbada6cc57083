"""The whole-daemon lab: the reference site of CONTRACT §7 in network namespaces.

Every host of the site is a namespace with one interface ``eth0`` plugged into a
bridge that lives in a namespace of its own, so the machine's own network is
never touched:

- ``tally``  10.20.0.10 (02:00:00:00:00:10) — sentinel runs here, with the webhook
  receivers, Alertmanager and Prometheus on its loopback
- ``gw``     10.20.0.1 (02:00:00:00:00:01), also holding the "internet":
  203.0.113.50 (central aggregation) and 198.51.100.23 (somewhere forbidden)
- ``svc``    10.20.0.2 (DNS) and 10.20.0.3 (NTP)
- ``app``    10.20.0.11, the app server that may reach the database
- ``client`` 10.20.0.50, a counting-network client
- ``admin``  10.20.1.5, in the admin network
- ``attacker`` 10.20.0.66, 10.20.5.7 and 10.20.6.1-32 (inside the home net, outside the
  counting net; the last for marker alerts)

While a lab is open, the test process's main thread sits in the ``tally``
namespace (and returns to its own when the lab closes): every socket, thread and
subprocess the test makes is then on the tally server, as an operator's would be.
Actions of other hosts run through :meth:`Lab.on`.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.conftest import EXAMPLE_SECRETS, REPO
from tests.sinks.am import Alertmanager
from tests.sinks.receiver import Receiver
from tests.sources.net.netkit import in_netns, ip, sysctl
from tests.support import free_port, wait_for

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
SENTINEL = str(Path(sys.executable).with_name("sentinel"))

TALLY = "10.20.0.10"
HOSTS: dict[str, tuple[list[str], str]] = {
    "tally": ([f"{TALLY}/16"], "02:00:00:00:00:10"),
    "gw": (["10.20.0.1/16"], "02:00:00:00:00:01"),
    "svc": (["10.20.0.2/16", "10.20.0.3/16"], "02:00:00:00:00:02"),
    "app": (["10.20.0.11/16"], "02:00:00:00:00:11"),
    "client": (["10.20.0.50/16"], "02:00:00:00:00:50"),
    "admin": (["10.20.1.5/16"], "02:00:00:00:01:05"),
    # 10.20.6.x: sources of the marker alerts tests wait for before asserting an absence
    "attacker": (["10.20.0.66/16", "10.20.5.7/16",
                  *(f"10.20.6.{i}/16" for i in range(1, 33))], "02:00:00:00:00:66"),
}
INTERNET = ["203.0.113.50", "198.51.100.23"]


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


@contextmanager
def main_thread_in(ns: str) -> Iterator[None]:
    """Move the calling thread into namespace ``ns`` for the block, then back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(f"/run/netns/{ns}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    finally:
        os.close(home)


def needs_lab() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root to create network namespaces")
    for binary in ("ip", "prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.skip(f"the lab needs {binary}")




class Network:
    """The namespaces and the bridge; ``create()`` then ``destroy()``."""

    def __init__(self) -> None:
        self.tag = f"l{os.getpid() % 100000}"
        self.switch = f"{self.tag}-switch"

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def create(self) -> None:
        self.destroy()
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, (host, (addrs, mac)) in enumerate(HOSTS.items()):
            ns = self.ns(host)
            ip("netns", "add", ns)
            port = f"p{i}"
            ip("link", "add", "eth0", "netns", ns, "address", mac, "type", "veth",
               "peer", "name", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0")
            ip("-n", self.switch, "link", "set", port, "up")
            for key in ("all", "default"):
                sysctl(ns, f"net.ipv6.conf.{key}.disable_ipv6", "1")
            for a in addrs:
                ip("-n", ns, "addr", "add", a, "dev", "eth0")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
        for a in INTERNET:
            ip("-n", self.ns("gw"), "addr", "add", f"{a}/32", "dev", "lo")
        ip("-n", self.ns("tally"), "route", "add", "default", "via", "10.20.0.1")

    def destroy(self) -> None:
        for host in [*HOSTS, "switch"]:
            name = self.switch if host == "switch" else self.ns(host)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


class Daemon:
    """`sentinel run` in the tally namespace, with a notify socket of the test's own."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str]) -> None:
        self.config = config
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify_path = workdir / "notify.sock"

    def start(self, timeout: float = 60.0) -> None:
        self.notify_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.notify_path))
        self.log = (self.workdir / "sentinel.log").open("ab")
        env = {**os.environ, **self.env, "NOTIFY_SOCKET": str(self.notify_path)}
        self.proc = subprocess.Popen([SENTINEL, "run", "-c", str(self.config)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"sentinel exited with {self.proc.returncode}:\n{self.tail()}")
                sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
                try:
                    if b"READY=1" in sock.recv(4096).split(b"\n"):
                        return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"no READY=1 within {timeout}s:\n{self.tail()}")
        finally:
            sock.close()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"sentinel did not stop within 15s:\n{self.tail()}")
        self.log.close()
        return code

    def tail(self, n: int = 4000) -> str:
        return (self.workdir / "sentinel.log").read_bytes()[-n:].decode(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.workdir / "sentinel.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


class Lab:
    """The site, its tree of watched files, receivers, Alertmanager, Prometheus, sentinel."""

    def __init__(self, workdir: Path, extra_rules: Path | None = None,
                 storm: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.storm = storm  # rules.storm of the config, when not the default
        self.net = Network()
        self.tree = workdir / "root"
        self.state = workdir / "state"
        self.extra_rules = extra_rules
        self._stack = ExitStack()

    # -- the hosts ---------------------------------------------------------

    def on(self, host: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on ``host``: its sockets are that host's."""
        return in_netns(self.net.ns(host), fn)

    def connect(self, host: str, dst: str, port: int, timeout: float = 1.0) -> bool:
        """A TCP connection attempt from ``host``; True if it was accepted."""
        def go() -> bool:
            with socket.socket() as s:
                s.settimeout(timeout)
                try:
                    s.connect((dst, port))
                except OSError:
                    return False
                return True
        return self.on(host, go)

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> Lab:
        self.net.create()
        self._stack.callback(self.net.destroy)
        self._stack.enter_context(main_thread_in(self.net.ns("tally")))
        self._make_tree()
        self.bawaslu = self._stack.enter_context(
            Receiver(secret=EXAMPLE_SECRETS["SENTINEL_BAWASLU_SECRET"]))
        self.ministry = self._stack.enter_context(
            Receiver(secret=EXAMPLE_SECRETS["SENTINEL_MINISTRY_SECRET"]))
        self.alertmanager = self._stack.enter_context(Alertmanager(self.workdir / "am"))
        self.metrics_port = free_port()
        self._listeners()
        self.config = self._write_config()
        init = subprocess.run([SENTINEL, "baseline", "init", "-c", str(self.config)],
                              env={**os.environ, **EXAMPLE_SECRETS}, capture_output=True,
                              text=True, timeout=120)
        assert init.returncode == 0, init.stderr
        self.daemon = Daemon(self.config, self.workdir, dict(EXAMPLE_SECRETS))
        self.daemon.start()
        self._stack.callback(self._stop_daemon)
        from tests.prom import Prometheus

        prom_dir = self.workdir / "prom"
        prom_dir.mkdir()
        self.prometheus = self._stack.enter_context(
            Prometheus(prom_dir, [f"127.0.0.1:{self.metrics_port}"]))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _stop_daemon(self) -> None:
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()

    def restart(self, between: Callable[[], None] | None = None) -> None:
        """Stop sentinel, run ``between`` while it is down, start it again."""
        assert self.daemon.stop() == 0
        if between is not None:
            between()
        self.daemon.start()

    def _listeners(self) -> None:
        """The tally server's services (22, 443, 5432) and the internet's (gw)."""
        self._serve("tally", "0.0.0.0", [22, 443, 5432])
        self._serve("gw", "0.0.0.0", [443, 8080, 9999])
        self._serve("svc", "0.0.0.0", [53])

    def _serve(self, host: str, addr: str, ports: list[int]) -> None:
        def make() -> list[socket.socket]:
            out = []
            for p in ports:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, p))
                s.listen(512)
                out.append(s)
            return out

        for s in self.on(host, make):
            t = threading.Thread(target=_accept_and_drain, args=(s,), daemon=True,
                                 name=f"lab-{host}-{s.getsockname()[1]}")
            t.start()
            self._stack.callback(s.close)

    # -- files and config ----------------------------------------------------

    #: the watched paths of the reference site, re-rooted under the lab tree
    WATCHED: list[tuple[str, str, bool]] = [
        ("opt/tally/bin", "tally-binaries", True),
        ("etc/tally", "tally-config", True),
        ("var/lib/tally/results", "tally-results", True),
        ("etc/passwd", "accounts", False),
        ("etc/shadow", "accounts", False),
        ("etc/group", "accounts", False),
        ("etc/sudoers", "accounts", False),
        ("etc/sudoers.d", "accounts", True),
        ("etc/ssh/sshd_config", "ssh", False),
        ("root/.ssh", "ssh", True),
        ("etc/cron.d", "persistence", True),
        ("etc/systemd/system", "persistence", True),
        ("lab/bench", "lab-bench", True),
    ]

    def path(self, rel: str) -> Path:
        return self.tree / rel

    def _make_tree(self) -> None:
        for rel, _, is_dir in self.WATCHED:
            p = self.path(rel)
            if is_dir:
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(f"{rel} contents\n")
        bin_ = self.path("opt/tally/bin/tally-server")
        bin_.write_bytes(b"\x7fELF tally server build 1\n")
        bin_.chmod(0o755)
        self.path("etc/tally/tally.conf").write_text("mode = count\n")
        self.path("var/lib/tally/results/tps-0001.json").write_text('{"votes": 1}\n')
        self.path("root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA admin\n")

    def _write_config(self) -> Path:
        example = yaml.safe_load((REPO / "config.example.yaml").read_text())
        cfg: dict[str, Any] = {
            "host": {"name": "tally-01", "addresses": [TALLY], "site": "lab", "region": "test"},
            "state_dir": str(self.state),
            "network": {"interfaces": ["eth0"], "home_nets": ["10.20.0.0/16"],
                        "flow_timeout": "5s", "flow_interval": "30s"},
            "fim": {
                "paths": [{"path": str(self.path(rel)), "recursive": rec, "tags": [tag]}
                          for rel, tag, rec in self.WATCHED],
                "exclude": example["fim"]["exclude"],
                "rescan_interval": "1h",
                "key_file": str(self.workdir / "keys" / "baseline.key"),
            },
            "rules": {"paths": [str(REPO / "rules"),
                                *([str(self.extra_rules)] if self.extra_rules else [])],
                      "reload_debounce": "300ms",
                      **({"storm": self.storm} if self.storm else {})},
            "lists": example["lists"],
            "schedules": example["schedules"],
            "outputs": {
                "journal": {"path": "alerts.jsonl",
                            "key_file": str(self.workdir / "keys" / "journal.key")},
                "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
                "webhooks": [
                    {"name": "bawaslu", "url": self.bawaslu.url, "format": "json",
                     "min_severity": "high", "secret_env": "SENTINEL_BAWASLU_SECRET",
                     "retry": {"initial": "100ms", "max": "1s"}},
                    {"name": "ministry-csirt", "url": self.ministry.url, "format": "json",
                     "min_severity": "critical", "include_tags": ["network"],
                     "secret_env": "SENTINEL_MINISTRY_SECRET",
                     "retry": {"initial": "100ms", "max": "1s"}},
                    {"name": "alertmanager", "url": [self.alertmanager.url],
                     "format": "alertmanager", "min_severity": "high",
                     "retry": {"initial": "100ms", "max": "1s"}},
                ],
            },
        }
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    # -- what came out -------------------------------------------------------

    def alerts_at(self, receiver: Receiver) -> list[dict[str, Any]]:
        return [r.json() for r in receiver.delivered()]

    def wait_alert(self, receiver: Receiver, rule: str, timeout: float = 20.0,
                   where: Callable[[dict[str, Any]], bool] = lambda a: True) -> dict[str, Any]:
        """The first alert of ``rule`` delivered to ``receiver`` with a valid signature."""
        def find() -> dict[str, Any] | None:
            for req in receiver.delivered():
                a = req.json()
                if a.get("rule") == rule and where(a):
                    assert req.signature_ok, f"bad signature on {a['id']}"
                    return dict(a)
            return None
        return wait_for(find, timeout, f"alert {rule} at {receiver.url}")

    def journal_verify(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SENTINEL, "journal", "verify", "-c", str(self.config)],
            env={**os.environ, **EXAMPLE_SECRETS}, capture_output=True, text=True, timeout=60)


def _accept_and_drain(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=_drain, args=(conn,), daemon=True, name="lab-conn").start()


def _drain(conn: socket.socket) -> None:
    with conn:
        try:
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass

