"""Fail closed: where sentinel cannot learn who changed a file, it says so (health
component down, sentinel_attribution_up 0, the reason) instead of staying quiet."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sentinel.sources.audit.netlink import AuditControl
from tests.conftest import REPO


def helper(prefix: list[str], tmp: Path) -> dict[str, Any]:
    (tmp / "w").mkdir()
    out = subprocess.run([*prefix, sys.executable, "-m", "tests.sources.audit.blind_helper",
                          str(tmp / "state"), str(tmp / "w")], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith('{"up"'))
    return dict(json.loads(line))


def test_without_audit_capabilities_attribution_is_down_and_says_why(
        audit_kernel: AuditControl, tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    # root's capabilities at exec come from the bounding set: without these two
    got = helper([setpriv, "--bounding-set", "-audit_control,-audit_read"], tmp_path)
    assert got["up"] is False and got["metric"] == 0
    assert "CAP_AUDIT_CONTROL" in got["reason"], got


def test_in_another_network_namespace_records_do_not_arrive_and_that_is_down(
        audit_kernel: AuditControl, tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    got = helper([unshare, "--net"], tmp_path)
    assert got["up"] is False and got["metric"] == 0
    assert "do not arrive" in got["reason"], got
