"""The code stays lint-clean and type-checks under mypy --strict."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "sentinel", "tests", "bench"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "sentinel"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_log_events_share_one_naming_style() -> None:
    """Every log call names its event in snake_case (``delivery_refused``); the prose
    goes in ``detail=``, so that one can search and alert on event names."""
    import ast
    import re

    methods = {"debug", "info", "warning", "error", "exception", "critical"}
    bad = []
    for path in sorted((REPO / "sentinel").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in methods and node.args):
                continue
            if "log" not in ast.unparse(node.func.value).lower():
                continue
            first = node.args[0]
            if (isinstance(first, ast.Constant) and isinstance(first.value, str)
                    and not re.fullmatch(r"[a-z][a-z0-9_]*", first.value)):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {first.value!r}")
    assert not bad, "\n".join(bad)
