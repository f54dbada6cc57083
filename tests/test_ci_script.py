"""`.ci/run` runs the suite with CI=true, under which a skip is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_ci_script_exports_ci_true_before_running_the_suite() -> None:
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    export = lines.index("export CI=true")
    suite = next(i for i, ln in enumerate(lines) if "-m pytest" in ln and not ln.startswith("#"))
    assert export < suite


def test_a_skip_fails_under_ci_true(tmp_path: Path) -> None:
    """The conftest hook the script relies on: with CI=true a skipped test is a failure."""
    probe = tmp_path / "test_skip_probe.py"
    probe.write_text("import pytest\n\ndef test_skips() -> None:\n    pytest.skip('probe')\n")

    def run(ci: str) -> int:
        # the repository's conftest loaded as a plugin, the probe outside the tree
        env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-p", "tests.conftest", "--rootdir", str(tmp_path), str(probe)],
                              cwd=tmp_path, env=env, capture_output=True, timeout=120,
                              check=False).returncode
    assert run("true") == 1
    assert run("") == 0
