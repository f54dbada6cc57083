"""Reload: swap keeps the state of unchanged rules, drops it for changed ones, and a bad
rule file never replaces the running rules."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from enginekit import conn, fired, load, windows
from prometheus_client import CollectorRegistry

from sentinel.engine import Engine, ProblemError
from sentinel.metrics import Metrics

SCAN = """
  - id: ssh-burst
    title: ssh burst
    severity: high
    kind: net.connection
    match: {dst_port: 22}
    threshold: {at_least: 3, window: 1m, group_by: src_ip}
"""
SUPPRESSED = """
  - id: db
    title: db
    severity: critical
    kind: net.connection
    match: {dst_port: 5432}
    suppress: {key: src_ip, period: 10m}
"""


def test_unchanged_rule_keeps_threshold_state(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, "rules:" + SCAN))
    fired(eng, conn(0, dst_port=22), conn(1, dst_port=22))
    # another rule added, the threshold rule untouched
    eng.swap(load(tmp_path, "rules:" + SCAN + SUPPRESSED))
    assert fired(eng, conn(2, dst_port=22)) == ["ssh-burst"]


def test_changed_rule_starts_afresh(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, "rules:" + SCAN))
    fired(eng, conn(0, dst_port=22), conn(1, dst_port=22))
    eng.swap(load(tmp_path, "rules:" + SCAN.replace("window: 1m", "window: 2m")))
    assert fired(eng, conn(2, dst_port=22)) == []
    assert fired(eng, conn(3, dst_port=22), conn(4, dst_port=22)) == ["ssh-burst"]


def test_changed_list_counts_as_a_changed_rule(tmp_path: Path) -> None:
    """A rule's definition includes the named lists it uses."""
    text = "rules:" + SCAN.replace("{dst_port: 22}", "{dst_port: {in: ssh_ports}}")
    eng = Engine(load(tmp_path, text, lists={"ssh_ports": (22,)}))
    fired(eng, conn(0, dst_port=22), conn(1, dst_port=22))
    eng.swap(load(tmp_path, text, lists={"ssh_ports": (22, 2222)}))
    assert fired(eng, conn(2, dst_port=22)) == []


def test_unchanged_rule_keeps_suppression_state(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, "rules:" + SUPPRESSED))
    assert fired(eng, conn(0, dst_port=5432), conn(1, dst_port=5432)) == ["db"]
    eng.swap(load(tmp_path, "rules:" + SUPPRESSED + SCAN))
    assert fired(eng, conn(2, dst_port=5432)) == []
    assert [a.count for a in eng.advance(600)] == [3]


def test_removed_rule_state_is_gone_after_its_folded_count_is_reported(
        tmp_path: Path) -> None:
    """The removed rule's open suppression period closes at the reload: its summary
    comes once with the next advance (a folded count is never lost), then nothing."""
    eng = Engine(load(tmp_path, "rules:" + SUPPRESSED))
    fired(eng, conn(0, dst_port=5432), conn(1, dst_port=5432))
    eng.swap(load(tmp_path, "rules:" + SCAN))
    assert [(a.count, a.extra["summary"], a.time) for a in eng.advance(10_000)] == [
        (2, True, 1.0)]
    assert eng.advance(20_000) == []
    assert fired(eng, conn(2, dst_port=5432)) == []


def test_bad_rule_file_never_reaches_the_engine(tmp_path: Path) -> None:
    """A bad file fails in load_rules, before any swap: there is no rule set to swap in."""
    with pytest.raises(ProblemError):
        load(tmp_path, "rules:" + SCAN.replace("dst_port", "dst_prt"))


def test_failure_during_the_swap_keeps_the_running_rules_and_their_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A swap that fails half-way leaves the old set, its state and the metric in place.

    No valid input makes the swap itself fail (every fault of a file is found while
    loading), so the failure is injected: building the second new rule's memory raises."""
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, "rules:" + SCAN), metrics=Metrics(reg))
    before = eng.rules
    fired(eng, conn(0, dst_port=22), conn(1, dst_port=22))
    new = load(tmp_path, "rules:" + SCAN.replace("window: 1m", "window: 2m") + SUPPRESSED,
               name="new.yaml")
    built: list[str] = []
    real = Engine._shared

    def failing(self: Engine, rule: object) -> object:
        built.append(getattr(rule, "id", "?"))
        if len(built) == 2:
            msg = "injected failure while building the new rules' state"
            raise MemoryError(msg)
        return real(self, rule)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "_shared", failing)
    with pytest.raises(MemoryError):
        eng.swap(new)
    monkeypatch.undo()
    assert built == ["ssh-burst", "db"], "the failure came during the swap, not before it"
    assert eng.rules is before
    assert reg.get_sample_value("sentinel_rules_loaded") == 1
    # the old threshold state survived: the third attempt within 1m fires
    assert fired(eng, conn(2, dst_port=22)) == ["ssh-burst"]
    assert fired(eng, conn(3, dst_port=5432)) == []


def test_rules_loaded_metric_follows_swap(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, "rules:" + SCAN), metrics=Metrics(reg))
    assert reg.get_sample_value("sentinel_rules_loaded") == 1
    eng.swap(load(tmp_path, "rules:" + SCAN + SUPPRESSED))
    assert reg.get_sample_value("sentinel_rules_loaded") == 2


def test_swap_from_another_thread_is_atomic(tmp_path: Path) -> None:
    """Each event sees one whole rule set: the old or the new, never a mix."""
    one = load(tmp_path, "rules:" + SCAN.replace("threshold: {at_least: 3, window: 1m,"
                                                 " group_by: src_ip}", ""), name="a.yaml")
    two = load(tmp_path, "rules:" + SUPPRESSED.replace("suppress: {key: src_ip, period: 10m}",
                                                       "").replace("5432", "22"),
               name="b.yaml")
    eng = Engine(one)
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            eng.swap(two)
            eng.swap(one)
    th = threading.Thread(target=swapper, name="test-swapper")
    th.start()
    try:
        for i in range(3000):
            got = fired(eng, conn(i, dst_port=22))
            assert got in (["ssh-burst"], ["db"])
    finally:
        stop.set()
        th.join(timeout=10)


def test_schedule_change_drops_state_only_of_rules_using_it(tmp_path: Path) -> None:
    scheduled = SCAN.replace("id: ssh-burst", "id: scheduled").replace(
        "dst_port: 22", "dst_port: 23") + "    schedule: {outside: w}\n"
    text = "rules:" + SCAN + scheduled
    w1 = {"w": windows(("2030-01-01T00:00:00+07:00", "2030-01-02T00:00:00+07:00"))}
    w2 = {"w": windows(("2031-01-01T00:00:00+07:00", "2031-01-02T00:00:00+07:00"))}
    eng = Engine(load(tmp_path, text, schedules=w1))
    fired(eng, conn(0, dst_port=22), conn(1, dst_port=22), conn(0, dst_port=23),
          conn(1, dst_port=23))
    eng.swap(load(tmp_path, text, schedules=w2))
    assert fired(eng, conn(2, dst_port=22), conn(2, dst_port=23)) == ["ssh-burst"]
