"""The end of the pipeline: journal -> router -> one delivery lane per target URL.

:func:`build_delivery` makes the :class:`Delivery` the daemon hands alerts to
(:mod:`sentinel.sinks.delivery`); :mod:`~sentinel.sinks.journal` keeps the
chained journal, :mod:`~sentinel.sinks.spool` each lane's durable queue, and
:mod:`~sentinel.sinks.lane` its worker. docs/delivery.md says what is promised.
"""

from __future__ import annotations

from sentinel.sinks.build import build_delivery, lane_name, spool_path
from sentinel.sinks.delivery import Delivery, Target
from sentinel.sinks.journal import JournalError
from sentinel.sinks.verify import JournalReport, verify_journal

__all__ = [
    "Delivery",
    "JournalError",
    "JournalReport",
    "Target",
    "build_delivery",
    "lane_name",
    "spool_path",
    "verify_journal",
]
