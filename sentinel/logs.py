"""Logging: structlog JSON lines on stdout when not a TTY, coloured console on a TTY.

Every line carries ``event``, ``level`` and ``timestamp``. Library loggers
(stdlib ``logging``) are rendered the same way. Secrets never reach a log line:
config objects hold them in :class:`~sentinel.config.Secret`, whose repr hides
the value, and :func:`_redact` masks values of keys that look like secrets.

The level is ``SENTINEL_LOG_LEVEL`` (``sentinel --log-level`` sets it): debug,
info (default), warning or error. Under systemd, when the stream is the one
``JOURNAL_STREAM`` names, each line starts with its syslog priority (``<4>``
for a warning) so that journald files it at that priority and ``journalctl -p
warning`` shows warnings and worse.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from sentinel.loglevel import level_from_env

_SECRETISH = re.compile(r"secret|password|passwd|token|authorization|api_key|hmac_key", re.I)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key != "event" and _SECRETISH.search(key):
            event_dict[key] = "***"
    return event_dict


#: syslog priorities (sd-daemon(3) line prefixes) of the level names
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
             "critical": 2}


def _to_journald(out: TextIO) -> bool:
    """True when ``out`` is the stream systemd connected to journald."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(out.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def _with_priority(render: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a renderer so each line starts with the sd-daemon priority of its level."""

    def prefixed(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        level = str(event_dict.get("level", method)).lower()
        return f"<{_PRIORITY.get(level, 6)}>{render(logger, method, event_dict)}"

    return prefixed


def configure(stream: TextIO | None = None, level: int | None = None) -> None:
    """Set up structlog and stdlib logging for the daemon and the CLI."""
    out = stream if stream is not None else sys.stdout
    if level is None:
        level = level_from_env()
    tty = out.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if tty
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    if _to_journald(out):
        renderer = _with_priority(renderer)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if not tty else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # a library's exception becomes a readable traceback, not a tuple
                *([] if tty else [structlog.processors.format_exc_info]),
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, level))
    # scapy prints routing chatter at import; it is not ours to report
    logging.getLogger("scapy").setLevel(logging.ERROR)


def get(name: str) -> Any:
    """A bound logger tagged with the component name."""
    # a lazy proxy: it binds at each use, so module-level loggers follow configure()
    return structlog.get_logger(component=name)
