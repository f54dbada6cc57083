"""Shared fixtures: paths to the repo and to ../shared, and example secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

#: Throwaway Standard Webhooks secrets for tests and the quick start.
EXAMPLE_SECRETS = {
    "SENTINEL_BAWASLU_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "SENTINEL_MINISTRY_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
}


@pytest.fixture
def example_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(k, v)
    return dict(EXAMPLE_SECRETS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (``CI=true``, set by the CI runner) everything must run: a skip fails.

    Locally a test that lacks root or a package skips with its reason."""
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("CI") == "true" and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI, where everything must run: {rep.longrepr}"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces / raw sockets)")
