"""The whole daemon with attribution.connections on, in namespaces the test makes: a
known program on the tally server connecting to a forbidden internet address, and
another answering on a port the server does not offer, are named (exe, pid, uid) on
the journaled alerts of the pack's rules; a connection whose process was gone at
once says why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from netkit import in_netns, ip, needs_netns, sysctl, wait_for
from ownerkit import Actor, connect_code, listen_code, program

from sentinel.sources.net.owner import CLOSED
from tests.conftest import REPO
from tests.support import free_port
from tests.test_daemon import SENTINEL, NotifySocket, metric, scrape

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180)]

TALLY, GW, FORBIDDEN = "10.20.0.10", "10.20.0.1", "198.51.100.23"


class Site:
    """Two namespaces: the tally server and a gateway that also holds an internet
    address nothing may reach; ``tag`` keeps parallel runs apart."""

    def __init__(self) -> None:
        tag = f"ow{os.getpid() % 100000}"
        self.tally, self.gw = f"{tag}-tally", f"{tag}-gw"
        self.dev = f"{tag}t"

    def create(self) -> None:
        self.destroy()
        for ns in (self.tally, self.gw):
            ip("netns", "add", ns)
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", self.dev, "netns", self.tally, "type", "veth", "peer", "name",
           "gw0", "netns", self.gw)
        ip("-n", self.tally, "addr", "add", f"{TALLY}/16", "dev", self.dev)
        ip("-n", self.gw, "addr", "add", f"{GW}/16", "dev", "gw0")
        ip("-n", self.gw, "addr", "add", f"{FORBIDDEN}/32", "dev", "lo")
        ip("-n", self.tally, "link", "set", self.dev, "up")
        ip("-n", self.gw, "link", "set", "gw0", "up")
        ip("-n", self.tally, "route", "add", "default", "via", GW)

    def destroy(self) -> None:
        for ns in (self.tally, self.gw):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def site() -> Iterator[Site]:
    needs_netns()
    s = Site()
    s.create()
    try:
        yield s
    finally:
        s.destroy()


def serve(ns: str, addr: str, port: int) -> socket.socket:
    """A listener in ``ns`` that accepts and keeps every connection."""
    def make() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(16)
        return s

    srv = in_netns(ns, make)
    kept: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                kept.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, name=f"serve-{port}", daemon=True).start()
    return srv


def write_config(tmp: Path, site: Site, port: int) -> Path:
    example = yaml.safe_load((REPO / "config.example.yaml").read_text())
    cfg: dict[str, Any] = {
        "host": {"name": "tally-01", "addresses": [TALLY]},
        "state_dir": str(tmp / "state"),
        "network": {"interfaces": [site.dev], "home_nets": ["10.20.0.0/16"]},
        "rules": {"paths": [str(REPO / "rules")]},
        "lists": example["lists"],
        "schedules": example["schedules"],
        "attribution": {"connections": True},
        "outputs": {"journal": {"path": "alerts.jsonl", "key_file": str(tmp / "j.key")},
                    "metrics": {"listen": f"127.0.0.1:{port}"}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def journaled(state: Path) -> list[dict[str, Any]]:
    journal = state / "alerts.jsonl"
    if not journal.exists():
        return []
    return [json.loads(x)["alert"] for x in journal.read_text().splitlines()]


def test_alerts_name_the_program_behind_an_outbound_connection_and_a_listening_port(
        site: Site, tmp_path: Path) -> None:
    serve(site.gw, FORBIDDEN, 8080)
    port = free_port()
    cfg = write_config(tmp_path, site, port)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    log = (tmp_path / "sentinel.log").open("w")
    daemon = subprocess.Popen(["ip", "netns", "exec", site.tally, SENTINEL, "run", "-c",
                               str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT)
    actors: list[Actor] = []

    def alert(rule: str, where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((a for a in journaled(tmp_path / "state")
                         if a["rule"] == rule and where(a["event"])), None)
        return wait_for(find, 30, f"alert {rule}")

    try:
        notify.wait_for("READY=1", timeout=60)
        exfil = program(tmp_path, b"tally-exfil")
        up = Actor(exfil, connect_code(FORBIDDEN, 8080), netns=site.tally)
        actors.append(up)
        backdoor = program(tmp_path, b"backdoor")
        door = Actor(backdoor, listen_code("0.0.0.0", 4444), netns=site.tally)
        actors.append(door)
        in_netns(site.gw, lambda: socket.create_connection((TALLY, 4444), timeout=5))
        # connection refused (nothing listens on 9999): the kernel closed the socket at
        # the reset, and the process ended at once
        gone = subprocess.run(["ip", "netns", "exec", site.tally, os.fsdecode(exfil), "-c",
                               f"import socket\ntry: socket.create_connection(('{FORBIDDEN}',"
                               " 9999), timeout=5)\nexcept OSError: pass"],
                              timeout=30, check=True)
        assert gone.returncode == 0

        out = alert("tally-outbound-unexpected-destination", lambda e: e["dst_port"] == 8080)
        ev = out["event"]
        assert ev["process_exe"] == os.fsdecode(exfil), ev["process_unknown"]
        assert ev["process_pid"] == up.pid and ev["process_uid"] == 0
        assert ev["process_user"] == "root" and ev["process_via"] == "socket"
        assert f"Program: {os.fsdecode(exfil)} (pid {up.pid}, user root, uid 0)." in \
            out["description"]

        listening = alert("tally-unexpected-listening-port", lambda e: e["src_port"] == 4444)
        ev = listening["event"]
        assert ev["process_exe"] == os.fsdecode(backdoor), ev["process_unknown"]
        assert ev["process_pid"] == door.pid
        assert f"Program: {os.fsdecode(backdoor)} (pid {door.pid}," in \
            listening["description"]

        closed = alert("tally-outbound-unexpected-destination", lambda e: e["dst_port"] == 9999)
        assert closed["event"]["process_unknown"] == CLOSED
        assert closed["event"]["process_pid"] is None

        def owner_up() -> float | None:
            text = in_netns(site.tally, lambda: scrape(port))
            return metric(text, 'sentinel_component_up{component="connections-owner"}')

        # the main loop publishes the components' health once a second
        assert wait_for(owner_up, 10, "connections-owner in the health metrics") == 1.0
        text = in_netns(site.tally, lambda: scrape(port))
        resolved = metric(text, 'sentinel_connection_owner_lookups_total{outcome="resolved"}')
        assert resolved is not None and resolved >= 2
    finally:
        for a in actors:
            a.end()
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()
        notify.close()
    assert daemon.returncode == 0
    assert "Traceback" not in (tmp_path / "sentinel.log").read_text()
