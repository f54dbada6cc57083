"""Run as a separate process by test_audit_blind.py: start file attribution, print
whether it is up and why not, stop. Started without audit capabilities, or in a
network namespace of its own, to see sentinel say it is blind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from sentinel.metrics import Metrics
from sentinel.sources.audit.attribution import FileAttribution


def main() -> None:
    state, watched = Path(sys.argv[1]), sys.argv[2].encode()
    metrics = Metrics(CollectorRegistry())
    attr = FileAttribution([(watched, True)], state, metrics)
    attr.start()
    up = metrics.registry.get_sample_value("sentinel_attribution_up", {"source": "fim"})
    print(json.dumps({"up": attr.alive(), "metric": up, "reason": attr.reason}))
    attr.stop()


if __name__ == "__main__":
    main()
