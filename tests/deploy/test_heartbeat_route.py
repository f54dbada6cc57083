"""The example Alertmanager config sends sentinel's heartbeat to the dead man's switch
(and nothing else there); the fleet e2e test runs the same route on a real cluster."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO
from tests.e2e.alertmanager_cluster import binary

AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def _route(*labels: str) -> str:
    p = subprocess.run([binary("amtool"), "config", "routes", "test",
                        f"--config.file={AM_CONFIG}", *labels],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.mark.parametrize("severity", ["info", "critical"])
def test_the_heartbeat_goes_to_the_dead_mans_switch_only(severity: str) -> None:
    assert _route("alertname=sentinel-heartbeat", f"severity={severity}", "host=tally-01",
                  "site=kota-bandung") == "deadman"


def test_other_alerts_never_reach_the_dead_mans_switch() -> None:
    assert "deadman" not in _route("alertname=sentinel-journal-truncated",
                                   "severity=critical", "site=kota-bandung")
