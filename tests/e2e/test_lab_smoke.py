"""The lab itself: sentinel starts on the site, sees a real connection, delivers it,
and never writes a webhook secret to its log."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLE_SECRETS
from tests.e2e.lab import Lab, needs_lab


def test_lab_smoke(tmp_path: Path) -> None:
    needs_lab()
    with Lab(tmp_path, extra_rules=Path(__file__).parent / "rules") as lab:
        assert lab.connect("tally", "198.51.100.23", 9999)
        a = lab.wait_alert(lab.bawaslu, "lab-forbidden-port")
        assert a["event"]["dst_ip"] == "198.51.100.23"
        assert a["event"]["direction"] == "outbound"
        log = (tmp_path / "sentinel.log").read_text()
        for secret in EXAMPLE_SECRETS.values():
            assert secret not in log
            assert secret.removeprefix("whsec_") not in log
