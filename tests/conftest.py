"""Shared fixtures: paths to the repo and to ../shared, and example secrets."""

from __future__ import annotations

import os
from pathlib import Path

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


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces / raw sockets)")
