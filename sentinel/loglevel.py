"""The log level option, kept apart from :mod:`sentinel.logs` so that the CLI can
check it without importing the logging stack (the CLI loads only what a command
needs)."""

from __future__ import annotations

import os

#: level names -> the numbers of Python's logging module
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
ENV_LEVEL = "SENTINEL_LOG_LEVEL"


def level_from_env() -> int:
    """The level ``SENTINEL_LOG_LEVEL`` names; info when unset.

    An unknown name is a ``ValueError`` saying what is valid: the CLI turns it
    into a clear exit 2 before anything runs.
    """
    name = os.environ.get(ENV_LEVEL, "info").strip().lower()
    if name not in LEVELS:
        msg = f"{ENV_LEVEL}: {name!r} is not a log level; valid: {', '.join(LEVELS)}"
        raise ValueError(msg)
    return LEVELS[name]
