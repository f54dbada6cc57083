"""A real sshd in a network namespace, logging to a real rsyslogd or a real journald.

No journald runs on the test machine, so the lab starts its own. sshd's syslog(3)
calls go to /dev/log, which inside sshd's private mount namespace is either the
Unix socket of an rsyslogd the lab starts with its own config (``auth,authpriv.*``
to a file in RSYSLOG_FileFormat, Debian's default RFC 3339 stamps), or a link to
the socket of a systemd-journald the lab starts in that namespace, whose journal
files land in the lab's /run. The host's /dev and /run are not touched: the lab's
/dev is a directory of bind mounts (null, zero, random, urandom) and its /run a
directory of its own (with /run/netns bound in), mounted over them only in sshd's
mount namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import wait_for

JOURNALD = "/lib/systemd/systemd-journald"


def needs_sshd() -> None:
    for tool in ("sshd", "rsyslogd", "ssh", "ssh-keygen", "unshare"):
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if path is None:
            pytest.skip(f"needs {tool} (Debian packages openssh-server, openssh-client,"
                        " rsyslog, util-linux)")


def needs_journald() -> None:
    if not Path(JOURNALD).exists() or shutil.which("journalctl") is None:
        pytest.skip("needs systemd-journald and journalctl (Debian package systemd)")


def _which(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    assert found is not None
    return found


class SshLab:
    """sshd on ``addr``:22 in namespace ``ns``, logging to rsyslogd (``auth_log``) or, with
    ``journal``, to a journald of its own (``journal_dir``)."""

    def __init__(self, tmp: Path, ns: str, addr: str, journal: bool = False) -> None:
        self.tmp = tmp
        self.journal = journal
        self.ns = ns
        self.addr = addr
        self.auth_log = tmp / "auth.log"
        self.devdir = tmp / "dev"
        self.key = tmp / "client_key"
        self._procs: list[subprocess.Popen[bytes]] = []

    def start_syslog(self) -> None:
        t = self.tmp
        self.devdir.mkdir()
        (t / "spool").mkdir()
        conf = t / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{t}/spool")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{self.devdir}/log")\n'
            f'auth,authpriv.* action(type="omfile" file="{self.auth_log}"'
            ' template="RSYSLOG_FileFormat")\n')
        self._procs.append(subprocess.Popen(
            [_which("rsyslogd"), "-n", "-f", str(conf), "-i", str(t / "rsyslog.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for((self.devdir / "log").exists, 10.0, "rsyslog's socket")

    def reopen_syslog(self) -> None:
        """What logrotate's postrotate does: rsyslogd closes and reopens its files."""
        self._procs[0].send_signal(signal.SIGHUP)

    def start_sshd(self) -> None:
        t = self.tmp
        subprocess.run([_which("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f",
                        str(t / "host_key")], check=True)
        subprocess.run([_which("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f",
                        str(self.key)], check=True)
        (t / "authorized_keys").write_text((t / "client_key.pub").read_text())
        conf = t / "sshd_config"
        conf.write_text(
            f"ListenAddress {self.addr}\nPort 22\nHostKey {t}/host_key\n"
            f"PidFile {t}/sshd.pid\nAuthorizedKeysFile {t}/authorized_keys\n"
            "StrictModes no\nPermitRootLogin yes\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nSyslogFacility AUTH\n"
            "LogLevel INFO\nMaxAuthTries 10\n")
        run, dev = t / "run", self.devdir
        dev.mkdir(exist_ok=True)
        for d in ("netns", "sshd", "log"):  # sshd refuses to start without /run/sshd
            (run / d).mkdir(parents=True)
        binds = "".join(f"touch {dev}/{d} && mount --bind /dev/{d} {dev}/{d} && "
                        for d in ("null", "zero", "random", "urandom"))
        # /run is the lab's (the namespaces stay reachable for ip netns exec)
        script = (f"{binds}mount --rbind /run/netns {run}/netns && "
                  f"mount --rbind {run} /run && ")
        script += f"mount --rbind {dev} /dev && "
        if self.journal:
            # started after /dev is the lab's: no /dev/kmsg, so no kernel messages
            (dev / "log").symlink_to("/run/systemd/journal/dev-log")
            script += (f"{{ {JOURNALD} & echo $! > {t}/journald.pid; }} && "
                       "for i in $(seq 100); do [ -S /run/systemd/journal/dev-log ] && break;"
                       " sleep 0.05; done && ")
        script += f"exec ip netns exec {self.ns} {_which('sshd')} -D -f {conf}"
        self._procs.append(subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        wait_for((t / "sshd.pid").exists, 10.0, "sshd to listen")

    @property
    def journal_dir(self) -> Path:
        """Where the lab's journald keeps its files (its runtime journal)."""
        return self.tmp / "run" / "log" / "journal"

    def ssh(self, client_ns: str, user: str, *, password: str | None = None) -> int:
        """One login attempt from ``client_ns``: by key, or by (wrong) ``password``."""
        opts = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                "-o", "IdentitiesOnly=yes", "-o", "NumberOfPasswordPrompts=1"]
        env = dict(os.environ)
        if password is None:
            opts += ["-i", str(self.key), "-o", "BatchMode=yes",
                     "-o", "PreferredAuthentications=publickey"]
        else:
            askpass = self.tmp / "askpass"
            askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
            askpass.chmod(0o700)
            env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY="x")
            opts += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
        res = subprocess.run(["ip", "netns", "exec", client_ns, "ssh", *opts,
                              f"{user}@{self.addr}", "true"],
                             env=env, capture_output=True, timeout=30, check=False,
                             stdin=subprocess.DEVNULL)
        return res.returncode

    def stop(self) -> None:
        for p in reversed(self._procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for name in ("sshd.pid", "journald.pid"):
            pidfile = self.tmp / name
            if pidfile.exists():
                with contextlib.suppress(ValueError, ProcessLookupError):
                    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
