"""Who changed a file: the Linux audit subsystem (#19, docs/attribution.md)."""

from __future__ import annotations

import os

from sentinel.config import Config
from sentinel.metrics import Metrics
from sentinel.sources.audit.attribution import FileAttribution


def build_file_attribution(config: Config, metrics: Metrics) -> FileAttribution | None:
    """The audit side of file attribution when ``attribution.files`` is "audit"."""
    if config.attribution.files != "audit":
        return None
    paths = [(os.fsencode(e.path), e.recursive) for e in config.fim.paths]
    return FileAttribution(paths, config.state_dir, metrics)


__all__ = ["FileAttribution", "build_file_attribution"]
