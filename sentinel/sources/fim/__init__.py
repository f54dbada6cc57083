"""File integrity: a signed baseline, a live inotify watcher, offline reconciliation.

What the daemon and other parts use::

    source = build_fim_source(config, metrics)   # None when fim.paths is empty
    source.start(emit)                           # offline events emitted before it returns
    key = load_key(config.fim.key, config.state_dir, create=False, what="fim")  # sentinel.keys
    for record in Baseline.open(path, key).records():   # BaselineInvalid if tampered
        ...

Trust in a baseline that failed its signature is re-established only by an
operator running ``sentinel baseline init``.
"""

from __future__ import annotations

from sentinel.sources.fim.baseline import Baseline, BaselineError, BaselineInvalid, FileRecord
from sentinel.sources.fim.source import FimSource, build_fim_source

__all__ = [
    "Baseline",
    "BaselineError",
    "BaselineInvalid",
    "FileRecord",
    "FimSource",
    "build_fim_source",
]
