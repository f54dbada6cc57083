"""The shapes that plug into the daemon: sources before the engine, sinks after it.

Sources and sinks are ``typing.Protocol`` s, not base classes: anything with these
methods fits. :mod:`sentinel.daemon` builds them from the config and wires
``source -> engine -> sink``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sentinel.alert import Alert
from sentinel.events import Event

#: What a source calls for every event it produces. It may block briefly when
#: the engine is behind (back-pressure), and never raises. When the event has an
#: ``ack``, whoever takes it calls that once: True when every alert of the event
#: is in the journal (or none was raised), False when one could not be journaled.
Emit = Callable[[Event], None]


class Source(Protocol):
    """Produces events on threads of its own until stopped."""

    name: str

    def start(self, emit: Emit) -> None:
        """Begin producing. May emit events before it returns (startup reconciliation)."""

    def stop(self) -> None:
        """Stop producing; after return, ``emit`` is not called again."""

    def alive(self) -> bool:
        """True while every worker thread of the source is running."""


class AlertSink(Protocol):
    """Takes alerts from the engine."""

    name: str

    def submit(self, alert: Alert) -> None:
        """Accept one alert. Returns once the alert is durable (on disk)."""

    def close(self, timeout: float) -> None:
        """Stop workers, giving in-flight work up to ``timeout`` seconds."""

    def alive(self) -> bool:
        """True while every worker of the sink is running."""
