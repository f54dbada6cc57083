"""What ssh-brute-force counts, measured on a real sshd: a login attempt by a real SSH
client sends the tally server far more than 600 bytes, a fingerprint's SYN and a banner
grab far less, so password guessing is told from a scan of port 22 (#17).

sshd runs in the watched namespace (tests/sources/auth/sshlab.py), the capture on its
interface; every connection's final ``net.flow`` goes through the rule pack's own
ssh-brute-force, loaded from rules/.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netkit import VethPair, in_netns, send_frames
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from support import wait_for
from test_net_live import _ready, pair, start

from sentinel.config_reader import load_config
from sentinel.engine import Engine, load_rules
from sentinel.events import Event
from tests.conftest import REPO
from tests.sources.auth.sshlab import SshLab, needs_sshd

__all__ = ["pair"]  # the fixture, used by name

EXAMPLE_CONFIG = REPO / "config.example.yaml"


@pytest.fixture
def sshd(pair: VethPair, tmp_path: Path) -> Iterator[SshLab]:
    needs_sshd()
    lab = SshLab(tmp_path / "ssh", pair.a, pair.A4)
    lab.tmp.mkdir()
    try:
        lab.start_syslog()
        lab.start_sshd()
        yield lab
    finally:
        lab.stop()


def _banner_grab(pair: VethPair) -> None:
    """Connect, read the greeting, close: what a version scan does."""
    def go() -> None:
        with socket.create_connection((pair.A4, 22), timeout=5) as s:
            s.recv(256)
    in_netns(pair.b, go)


def _ssh_sessions(got: Any, pair: VethPair) -> dict[int, dict[str, Any]]:
    """The final flow report of every connection from b to sshd, by client port."""
    return {f["src_port"]: f for f in got.find("net.flow", src_ip=pair.B4, dst_ip=pair.A4,
                                               dst_port=22, final=True)}


@pytest.mark.root
@pytest.mark.timeout(180)
def test_live_password_guessing_counts_and_a_scan_of_port_22_does_not(
        pair: VethPair, sshd: SshLab, tmp_path: Path) -> None:
    src, got, _ = start(pair, tmp_path, [pair.va])
    try:
        _ready(pair, got)
        # an OS fingerprint's probes: SYNs to the open port, each answered, reset by the
        # prober's kernel (it never opened a socket for them)
        eth = Ether(src=pair.BMAC, dst=pair.AMAC)
        send_frames(pair.b, pair.vb, [bytes(eth / IP(src=pair.B4, dst=pair.A4)
                                            / TCP(sport=47000 + k, dport=22, flags="S"))
                                      for k in range(16)])
        for _ in range(12):
            _banner_grab(pair)
        for k in range(10):  # a guessing tool's sessions: key exchange, a wrong password
            assert sshd.ssh(pair.b, "root", password=f"guess{k}") != 0
        wait_for(lambda: len(_ssh_sessions(got, pair)) >= 38 or None, 30,
                 "the 38 connections' final flow reports")
        flows = _ssh_sessions(got, pair)
    finally:
        src.stop()
    probes = [f for p, f in flows.items() if 47000 <= p < 47016]
    others = [f for p, f in flows.items() if not 47000 <= p < 47016]
    assert len(probes) == 16 and len(others) == 22
    assert all(f["established"] and f["bytes_out"] < 200 for f in probes), probes
    grabs = sorted(others, key=lambda f: f["bytes_out"])[:12]
    logins = sorted(others, key=lambda f: f["bytes_out"])[12:]
    # the measure the rule's 600 bytes stands on, with room on both sides
    assert max(f["bytes_out"] for f in grabs) < 450, grabs
    assert min(f["bytes_out"] for f in logins) > 1200, logins

    # the reference site's pack, with this namespace's address as the tally server's
    config = load_config(EXAMPLE_CONFIG, secrets=False)
    config = dataclasses.replace(config, lists={**config.lists, "tally_server": (pair.A4,)})
    engine = Engine(load_rules(config))
    alerts = [a for f in sorted(flows.values(), key=lambda f: f["time"])
              for a in engine.process(Event.from_dict(f)) if a.rule == "ssh-brute-force"]
    assert len(alerts) == 1
    assert alerts[0].to_dict()["count"] == 10
