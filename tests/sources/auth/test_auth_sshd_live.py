"""A real sshd refusing and accepting logins; its records read back by the auth source.

sshd runs in a namespace the test creates and logs through a real rsyslogd into an
auth.log (sshlab.py says why: no journald runs here). The source follows that file
as it would /var/log/auth.log, and a rotation (rename, new file) loses nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.config import Config
from sentinel.config_reader import load_config
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.auth import AuthSource
from sentinel.sources.auth.source import JOURNAL_ARGS
from tests.sources.auth.sshlab import SshLab, needs_journald, needs_sshd
from tests.sources.net.netkit import VethPair, needs_netns, veth_pair
from tests.support import wait_for


def _config(tmp: Path, auth_log: Path) -> Config:
    path = tmp / "config.yaml"
    path.write_text(f"host: {{name: tally-01, addresses: [10.99.0.1]}}\nstate_dir: {tmp}\n"
                    f"auth:\n  files: [{auth_log}]\n")
    return load_config(path)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[SshLab, VethPair]]:
    needs_netns()
    needs_sshd()
    with veth_pair("ssh") as pair:
        lab = SshLab(tmp_path, pair.a, pair.A4)
        try:
            lab.start_syslog()
            lab.start_sshd()
            yield lab, pair
        finally:
            lab.stop()


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        with self.lock:
            self.events.append(ev)

    def logins(self, **want: object) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.kind == "auth.login"
                    and all(e.fields.get(k) == v for k, v in want.items())]


def test_sshd_failed_and_accepted_logins_become_auth_login_events(
        lab: tuple[SshLab, VethPair], tmp_path: Path) -> None:
    ssh, pair = lab
    src = AuthSource(_config(tmp_path, ssh.auth_log), Metrics())
    got = Collect()
    src.start(got)
    try:
        assert ssh.ssh(pair.b, "nosuchuser", password="guess1") != 0
        assert ssh.ssh(pair.b, "root", password="guess2") != 0
        assert ssh.ssh(pair.b, "root") == 0
        wait_for(lambda: got.logins(success=True), 15.0, "the accepted login")
        wait_for(lambda: got.logins(user="root", success=False, method="password"), 15.0,
                 "root's failed password")
        invalid = got.logins(user="nosuchuser", invalid_user=True)
        assert invalid and all(e.fields["success"] is False for e in invalid)
        ok = got.logins(success=True)
        assert len(ok) == 1
        f = ok[0].fields
        assert (f["user"], f["src_ip"], f["method"], f["service"]) == (
            "root", pair.B4, "publickey", "sshd")
        assert isinstance(f["src_port"], int) and f["src_port"] > 0
        assert ok[0].host == "tally-01" and ok[0].source == "auth"
        # every field of the kind is present (None where the record does not say)
        assert set(f) >= {"user", "src_ip", "method", "service", "success", "tty"}
        assert src.components() == {f"auth:{ssh.auth_log}": True}
    finally:
        src.stop()


def test_a_login_after_the_log_is_rotated_is_read_from_the_new_file(
        lab: tuple[SshLab, VethPair], tmp_path: Path) -> None:
    ssh, pair = lab
    assert ssh.ssh(pair.b, "root", password="before") != 0
    wait_for(lambda: ssh.auth_log.exists() and b"before" not in ssh.auth_log.read_bytes()
             and ssh.auth_log.stat().st_size > 0, 10.0, "rsyslog to write the file")
    src = AuthSource(_config(tmp_path, ssh.auth_log), Metrics())
    got = Collect()
    src.start(got)
    try:
        # history before the start is not news
        assert ssh.ssh(pair.b, "root") == 0
        wait_for(lambda: got.logins(success=True), 15.0, "the first accepted login")
        assert not got.logins(success=False)
        # logrotate's way: rename, then rsyslog is told to reopen (HUP)
        ssh.auth_log.rename(ssh.auth_log.with_suffix(".log.1"))
        ssh.reopen_syslog()
        assert ssh.ssh(pair.b, "root") == 0
        wait_for(lambda: len(got.logins(success=True)) == 2, 15.0,
                 "the login written to the new file")
    finally:
        src.stop()


@pytest.fixture
def journal_lab(tmp_path: Path) -> Iterator[tuple[SshLab, VethPair]]:
    needs_netns()
    needs_sshd()
    needs_journald()
    with veth_pair("sj") as pair:
        lab = SshLab(tmp_path, pair.a, pair.A4, journal=True)
        try:
            lab.start_sshd()
            yield lab, pair
        finally:
            lab.stop()


def test_sshd_logins_read_back_from_a_real_journal_through_journalctl(
        journal_lab: tuple[SshLab, VethPair], tmp_path: Path) -> None:
    """The journal path: sshd -> journald -> journalctl -o json --follow -> events."""
    ssh, pair = journal_lab
    path = tmp_path / "config.yaml"
    path.write_text(f"host: {{name: tally-01, addresses: [10.99.0.1]}}\nstate_dir: {tmp_path}\n"
                    "auth: {journal: true}\n")
    cmd = ("journalctl", f"--directory={ssh.journal_dir}", *JOURNAL_ARGS)
    # the journal's directory appears with its first record
    assert ssh.ssh(pair.b, "root", password="first") != 0
    wait_for(lambda: any(ssh.journal_dir.rglob("*.journal")), 10.0, "the journal file")
    src = AuthSource(load_config(path), Metrics(), journal_cmd=cmd)
    got = Collect()
    src.start(got)
    try:
        wait_for(lambda: src.components() == {"auth:journal": True}, 10.0, "journalctl")
        assert ssh.ssh(pair.b, "root", password="guess") != 0
        assert ssh.ssh(pair.b, "root") == 0
        ok = wait_for(lambda: got.logins(success=True), 15.0, "the accepted login")
        f = ok[0].fields
        assert (f["user"], f["src_ip"], f["method"]) == ("root", pair.B4, "publickey")
        # --lines=0: the failure before the start is history, the one after it is news
        failed = wait_for(lambda: got.logins(success=False), 15.0, "the failed password")
        assert len(failed) == 1 and failed[0].fields["method"] == "password"
        # journalctl dies: the source says it is blind, and once it runs again it reads
        # from its last record, so a login while it was down is not lost
        src.restart_pause = 3.0
        assert src._proc is not None
        src._proc.kill()
        wait_for(lambda: src.components() == {"auth:journal": False}, 10.0, "blind state")
        assert ssh.ssh(pair.b, "nobody2", password="x") != 0
        wait_for(lambda: got.logins(user="nobody2"), 15.0, "the login made while down")
        assert src.components() == {"auth:journal": True}
    finally:
        src.stop()
