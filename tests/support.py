"""Small helpers every test folder uses: a free loopback port, bounded polling."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], T], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy and return that; fail the test
    naming ``what`` (and the last answer) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last answer: {got!r}")
        time.sleep(interval)
