"""Which webhook targets take an alert.

A target takes an alert when (its severity is at least ``min_severity``, or
one of its tags is in ``include_tags``, or its rule is in ``include_rules``)
and not (one of its tags is in ``exclude_tags`` or its rule is in
``exclude_rules``). Excludes win.
"""

from __future__ import annotations

from sentinel.alert import SEVERITY_RANK, Alert
from sentinel.config import WebhookConfig


class Route:
    """The routing predicate of one target: ``route(alert) -> bool``."""

    def __init__(self, hook: WebhookConfig) -> None:
        self.min_rank = SEVERITY_RANK[hook.min_severity]
        self.include_tags = frozenset(hook.include_tags)
        self.exclude_tags = frozenset(hook.exclude_tags)
        self.include_rules = frozenset(hook.include_rules)
        self.exclude_rules = frozenset(hook.exclude_rules)

    def __call__(self, alert: Alert) -> bool:
        if alert.rule in self.exclude_rules or not self.exclude_tags.isdisjoint(alert.tags):
            return False
        return (
            SEVERITY_RANK.get(alert.severity, 0) >= self.min_rank
            or alert.rule in self.include_rules
            or not self.include_tags.isdisjoint(alert.tags)
        )
