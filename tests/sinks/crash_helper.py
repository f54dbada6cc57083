"""Run by test_sink_crash.py as a child process that gets ``kill -9``.

    python crash_helper.py CONFIG N [hang-spool|hang-second-spool]

Builds the Delivery from CONFIG, submits N alerts, prints ``ready`` and then
keeps delivering until it is killed. With ``hang-spool`` the first spool insert
prints ``in-window`` and never returns: the alert is journaled and not yet
spooled, the moment a ``kill -9`` must not lose it; with ``hang-second-spool``
the first lane's insert goes through and the second one's hangs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sentinel import logs
from sentinel.alert import Alert
from sentinel.config_reader import load_config
from sentinel.metrics import Metrics
from sentinel.sinks import build_delivery
from sentinel.sinks.spool import Spool


def _hang(*_: object, **__: object) -> None:
    print("in-window", flush=True)
    while True:
        time.sleep(1)


def _hang_second(real: object) -> object:
    """An insert that works once, then hangs: the first lane has the alert, the second not."""
    calls = []

    def insert(self: Spool, *args: object, **kw: object) -> None:
        calls.append(1)
        if len(calls) > 1:
            _hang()
        real(self, *args, **kw)  # type: ignore[operator]
    return insert


def main() -> None:
    logs.configure(sys.stderr)
    config = load_config(Path(sys.argv[1]))
    delivery = build_delivery(config, Metrics())
    if sys.argv[3:] == ["hang-spool"]:
        Spool.insert = _hang  # type: ignore[method-assign]
    if sys.argv[3:] == ["hang-second-spool"]:
        Spool.insert = _hang_second(Spool.insert)  # type: ignore[method-assign]
    for i in range(int(sys.argv[2])):
        delivery.submit(Alert(rule="crash-test", title=f"alert {i}", severity="critical",
                              time=time.time(), host="tally-01", source="fim",
                              tags=("accounts",), event={"kind": "fim.modified",
                                                         "path": f"/etc/f{i}"}))
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
