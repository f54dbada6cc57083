"""Audit locked with ``auditctl -e 2`` cannot be made here without freezing this
machine's audit configuration until reboot, so these tests put a stand-in for the
kernel's answers (the one mock of the attribution tests) behind FileAttribution."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from sentinel.metrics import Metrics
from sentinel.sources.audit.attribution import FileAttribution
from sentinel.sources.audit.netlink import AuditError, Status, WatchRule


class LockedKernel:
    """AUDIT_GET says enabled=2; any change is refused (EPERM), as the kernel does."""

    def __init__(self, rules: list[WatchRule]) -> None:
        self.loaded = rules
        self.changes = 0

    def __enter__(self) -> LockedKernel:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def status(self) -> Status:
        return Status(enabled=2, pid=0, lost=0, backlog=0)

    def rules(self) -> list[WatchRule]:
        return list(self.loaded)

    def add(self, rule: WatchRule) -> None:
        self.changes += 1
        raise AuditError(1, "locked")

    delete = add

    def set_enabled(self, enabled: int) -> None:
        self.changes += 1
        raise AuditError(1, "locked")


def test_locked_audit_without_sentinels_rules_is_down_and_says_how_to_fix_it(
        tmp_path: Path) -> None:
    kernel = LockedKernel([])
    metrics = Metrics(CollectorRegistry())
    attr = FileAttribution([(str(tmp_path).encode(), True)], tmp_path / "state", metrics,
                           control=lambda: kernel)  # type: ignore[arg-type,return-value]
    attr.start()
    try:
        assert attr.alive() is False
        assert "locked (enabled=2)" in attr.reason and "-k sentinel" in attr.reason
        assert metrics.registry.get_sample_value("sentinel_attribution_up",
                                                 {"source": "fim"}) == 0
        assert kernel.changes == 0, "a locked kernel is not asked to change"
    finally:
        attr.stop()
    assert kernel.changes == 0, "nothing was added, so nothing is deleted at stop"
