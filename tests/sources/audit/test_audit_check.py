"""``sentinel check`` of a config with attribution on validates it without touching the
kernel: audit stays as it was and no rule is added."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sentinel.sources.audit.netlink import AuditControl
from tests.sources.fim.daemonkit import Daemon

SENTINEL = str(Path(sys.executable).with_name("sentinel"))


def test_check_leaves_kernel_audit_as_it_found_it(audit_kernel: AuditControl,
                                                   tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    d.config.write_text(d.config.read_text() + "attribution: {files: audit}\n")
    before = (audit_kernel.status().enabled, sorted(audit_kernel.rules()))
    p = subprocess.run([SENTINEL, "check", "-c", str(d.config)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (audit_kernel.status().enabled, sorted(audit_kernel.rules())) == before


def test_baseline_verify_says_why_its_drift_names_no_process(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    (d.w / "tally.conf").write_text("seats = 5\n")
    d.config.write_text(d.config.read_text() + "attribution: {files: audit}\n")
    init = subprocess.run([SENTINEL, "baseline", "init", "-c", str(d.config)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert init.returncode == 0, init.stderr
    (d.w / "tally.conf").write_text("seats = 9\n")
    p = subprocess.run([SENTINEL, "baseline", "verify", "--events", "-c", str(d.config)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 1, p.stderr
    (ev,) = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert ev["kind"] == "fim.modified"
    assert ev["process_unknown"] == "found by sentinel baseline verify"
    assert ev["process"] == "not known (found by sentinel baseline verify)"
    assert ev["process_pid"] is None
