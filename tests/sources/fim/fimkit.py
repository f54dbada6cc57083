"""Helpers for the FIM tests: a real watched tree, a config, a running source, and
bounded waits for events.

``Site.barrier()`` makes "exactly once" checkable without sleeping: it creates
a marker file and waits for its ``fim.created``, then for the source to hold
nothing. The source handles events in the order the kernel queued them, so
once the marker is out every earlier kernel event has been handled; once the
source is idle, nothing it held back (new paths settling) is still to come.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel.config import Config
from sentinel.config_reader import load_config
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.fim import FimSource, build_fim_source
from tests import support

WAIT = 10.0  # upper bound for any single wait; a passing test waits far less


def wait_for(cond: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll ``cond`` until truthy (bounded by WAIT); return its value or fail naming ``what``."""
    return support.wait_for(cond, timeout, what, interval=0.01)


class Collector:
    """The ``emit`` callable: records every event, thread-safe.

    It stands for the daemon's engine and journal: each event is acknowledged
    as journaled once recorded (``journaled`` False: refused, as by a full disk).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []
        self.journaled = True

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)
        if event.ack is not None:
            event.ack(self.journaled)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()


class Site:
    """A watched tree under ``tmp_path/w`` with its config and state dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.w = tmp_path / "w"
        self.state = tmp_path / "state"
        self.w.mkdir()
        (self.w / "bin").mkdir()
        (self.w / "bin" / "tally").write_bytes(b"#!/bin/sh\necho tally\n")
        os.chmod(self.w / "bin" / "tally", 0o755)
        (self.w / "conf").mkdir()
        (self.w / "conf" / "app.conf").write_text("threshold = 5\n")
        (self.w / "readme").write_text("hello\n")
        self.metrics = Metrics()
        self.events = Collector()
        self.source: FimSource | None = None
        self._marks = itertools.count()

    def config(self, extra_paths: tuple[str, ...] = (), exclude: str = '["*.swp", "*~"]',
               fim_extra: tuple[str, ...] = ()) -> Config:
        """Write and load the config; ``extra_paths`` are YAML flow mappings for fim.paths."""
        paths = [f"{{path: {self.w}, tags: [tally-site]}}",
                 f"{{path: {self.w / 'bin'}, tags: [tally-binaries]}}", *extra_paths]
        lines = [
            "host: {name: tally-01, addresses: [10.20.0.10]}",
            f"state_dir: {self.state}",
            "fim:",
            "  paths:",
            *(f"    - {p}" for p in paths),
            f"  exclude: {exclude}",
            *(f"  {x}" for x in fim_extra),
        ]
        cfg = self.root / "config.yaml"
        cfg.write_text("\n".join(lines) + "\n")
        return load_config(cfg)

    def start(self, config: Config | None = None) -> list[Event]:
        """Start a fresh source (events cleared); return what it emitted before returning."""
        self.events.clear()
        self.metrics = Metrics()
        src = build_fim_source(config or self.config(), self.metrics)
        assert src is not None
        self.source = src
        src.start(self.events)
        return self.events.snapshot()

    def stop(self) -> None:
        if self.source is not None:
            self.source.stop()
            self.source = None

    def barrier(self) -> None:
        """Wait until every event caused so far has been emitted (see module doc)."""
        mark = self.w / f"zz-barrier-{next(self._marks)}"
        mark.write_bytes(b"")
        wait_for(lambda: any(e.kind == "fim.created" and e.fields["path"] == str(mark)
                             for e in self.events.snapshot()), what=f"barrier {mark.name}")
        # Paths found inside a new directory are held after it is reported.
        wait_for(lambda: self.source is not None and self.source.idle(), what="source idle")

    def changes(self) -> list[Event]:
        """Events so far, barrier markers left out."""
        return [e for e in self.events.snapshot()
                if "zz-barrier-" not in str(e.fields.get("path"))
                and "zz-barrier-" not in str(e.fields.get("dest_path"))]

    def settled(self) -> list[Event]:
        self.barrier()
        return self.changes()

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    """(kind, path relative to the site root) of each event, in order."""
    out = []
    for e in events:
        p = str(e.fields["path"])
        out.append((e.kind, p.split("/w/", 1)[1] if "/w/" in p else p))
    return out
