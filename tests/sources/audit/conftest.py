"""Fixtures of the attribution tests: the kernel's audit state, saved and restored.

Tests here switch kernel audit on and add watch rules (the daemon does it itself);
``audit_kernel`` puts back what it found: rules with sentinel's key that were
not there before are deleted, and audit is switched off again if it was off.
Records only reach the initial network namespace, so these tests run there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.sources.audit.netlink import RULE_KEY, AuditControl, AuditError


@pytest.fixture
def audit_kernel() -> Iterator[AuditControl]:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)")
    try:
        ctl = AuditControl()
        before = ctl.status()
        rules = set(ctl.rules())
    except OSError as exc:
        pytest.skip(f"no kernel audit here: {exc}")
    if before.enabled == 2:
        ctl.close()
        pytest.skip("kernel audit is locked (enabled=2): rules cannot be changed")
    try:
        yield ctl
    finally:
        try:
            for r in ctl.rules():
                if r.key == RULE_KEY and r not in rules:
                    ctl.delete(r)
            if before.enabled == 0 and ctl.status().enabled == 1:
                ctl.set_enabled(0)
        except AuditError:
            pass
        ctl.close()


class Tools:
    """Copies of system programs under a distinctive folder (a non-UTF-8 byte in its
    name), so an alert naming their exe can only have come from the audit record."""

    def __init__(self, tmp: Path) -> None:
        self.dir = os.fsencode(tmp) + b"/tools\xff"
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o755)
        for name in ("sh", "rm", "mv", "chmod"):
            src = shutil.which(name)
            assert src is not None
            shutil.copy(src, self.dir + b"/tally-" + name.encode())

    def exe(self, name: str) -> bytes:
        return self.dir + b"/tally-" + name.encode()


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder other users can enter (pytest's own is root's only): the
    tests run one writer as nobody, to see its uid named."""
    path = Path(tempfile.mkdtemp(prefix="sentinel-audit-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tools(open_tmp: Path) -> Tools:
    return Tools(open_tmp)
