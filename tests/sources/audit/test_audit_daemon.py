"""The real daemon: a real process changes a watched file and the journal record and
the json webhook body name it; rules deleted under the daemon come back, logged."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from sentinel.events import name_bytes
from sentinel.sources.audit.netlink import RULE_KEY, AuditControl
from tests.sinks.receiver import Receiver
from tests.sources.audit.conftest import Tools
from tests.sources.fim.daemonkit import SECRET, Daemon
from tests.support import wait_for


def alert_for(d: Daemon, path: bytes, pid: int) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for a in d.alerts():
            if name_bytes(a["event"], "path") == path and a["event"].get("process_pid") == pid:
                return a
        return None
    try:
        return wait_for(find, 30, f"an alert on {path!r} naming pid {pid}")
    except BaseException:
        seen = [(a["event"]["kind"], a["event"].get("process_pid"),
                 a["event"].get("process_unknown")) for a in d.alerts()]
        print("alerts on the path:", seen)
        raise


def test_the_journal_and_the_webhook_name_the_process_and_rules_come_back(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    with Receiver(secret=SECRET) as r:
        d = Daemon(open_tmp, r.url)
        (d.w / "tally.conf").write_text("seats = 5\n")
        d.config.write_text(d.config.read_text() + "attribution: {files: audit}\n")
        d.start()
        try:
            w = os.fsencode(d.w)
            sh = tools.exe("sh")
            proc = subprocess.Popen([sh, b"-c", b"echo 'seats = 9' > " + w + b"/tally.conf"])
            assert proc.wait(timeout=10) == 0
            ev = alert_for(d, w + b"/tally.conf", proc.pid)["event"]
            assert base64.b64decode(ev["process_exe_b64"]) == sh
            assert ev["process_ppid"] == os.getpid()
            assert ev["process_uid"] == 0 and ev["process_user"] == "root"
            # the command line as the kernel keeps it (its first 128 bytes)
            assert "/tally-sh -c echo 'seats = 9' > " in ev["process_command"]
            assert ev["process_via"] == "audit" and ev["process_unknown"] is None
            wait_for(lambda: any(json.loads(q.body)["event"].get("process_pid") == proc.pid
                                 for q in r.requests), 30, "the webhook body naming the pid")

            ours = [x for x in audit_kernel.rules() if x.key == RULE_KEY
                    and x.path.startswith(os.fsencode(open_tmp))]
            for rule in ours:  # what `auditctl -D` at auditd's restart does
                audit_kernel.delete(rule)
            wait_for(lambda: any('"audit_rules_readded"' in x for x in d.log_lines()), 30,
                     "the log line saying the rules were added again")
            wait_for(lambda: set(ours) <= set(audit_kernel.rules()), 30, "every rule back")
            proc = subprocess.Popen([tools.exe("rm"), w + b"/tally.conf"])
            assert proc.wait(timeout=10) == 0
            ev = alert_for(d, w + b"/tally.conf", proc.pid)["event"]
            assert base64.b64decode(ev["process_exe_b64"]) == tools.exe("rm")
        finally:
            assert d.stop() == 0
    assert not [x for x in audit_kernel.rules() if x.path.startswith(os.fsencode(open_tmp))]


def test_a_reload_that_turns_attribution_on_names_the_next_writer(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    d = Daemon(open_tmp)
    (d.w / "tally.conf").write_text("seats = 5\n")
    d.start()
    try:
        w = os.fsencode(d.w)
        sh = tools.exe("sh")
        proc = subprocess.Popen([sh, b"-c", b"echo 'seats = 6' > " + w + b"/tally.conf"])
        assert proc.wait(timeout=10) == 0
        wait_for(lambda: any(a["event"]["kind"] == "fim.modified" for a in d.alerts()), 30,
                 "the first change journaled")
        (first,) = [a["event"] for a in d.alerts()]
        assert first["process_pid"] is None and first["process_unknown"] is None  # off
        # a first reload takes in what the first start made (the baseline key is one of
        # sentinel's own watched files once it exists), so that the second one differs
        # from the running config by the attribution section alone
        d.config.write_text(d.config.read_text() + "# a comment\n")
        wait_for(lambda: sum('"reloaded"' in x for x in d.log_lines()) == 1, 30, "reload 1")
        d.config.write_text(d.config.read_text() + "attribution: {files: audit}\n")
        wait_for(lambda: sum('"reloaded"' in x for x in d.log_lines()) == 2, 30, "reload 2")
        wait_for(lambda: any(r.key == RULE_KEY and r.path == w for r in audit_kernel.rules()),
                 30, "sentinel's rule on the watched folder")
        proc = subprocess.Popen([sh, b"-c", b"echo 'seats = 7' > " + w + b"/tally.conf"])
        assert proc.wait(timeout=10) == 0
        ev = alert_for(d, w + b"/tally.conf", proc.pid)["event"]
        assert base64.b64decode(ev["process_exe_b64"]) == sh
    finally:
        assert d.stop() == 0
    assert not [x for x in audit_kernel.rules() if x.path.startswith(os.fsencode(open_tmp))]
