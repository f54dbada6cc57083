"""The daemon's Attestor, driven by a settable clock: when it writes, and what it signs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from attest_helpers import make_files, record_of, write_baseline
from prometheus_client import CollectorRegistry

from sentinel.attest import (
    Attestor,
    MerkleTree,
    generate_keypair,
    load_file,
    load_folder,
    load_public_key,
    load_tree,
    verify_chain,
)
from sentinel.attest.attestor import RETRY_AFTER
from sentinel.config import Config
from sentinel.metrics import Metrics
from sentinel.sources.fim.baseline import Baseline

COUNTING = """\
counting:
  - {start: "2024-02-14T13:00:00+07:00", end: "2024-02-15T23:59:00+07:00"}
recount:
  - {start: "2024-02-20T08:00:00+07:00", end: "2024-02-20T17:00:00+07:00"}
"""
OPEN = datetime.fromisoformat("2024-02-14T13:00:00+07:00").timestamp()
CLOSE = datetime.fromisoformat("2024-02-15T23:59:00+07:00").timestamp()
HOUR = 3600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _attestor(config: Config, clock: Clock) -> tuple[Attestor, Metrics]:
    metrics = Metrics(CollectorRegistry())
    heads = iter(range(1000))

    def head() -> tuple[int, str]:
        n = next(heads)
        return n, f"{n:064x}"

    return Attestor(config, metrics, clock, rules_digest=lambda: "ab" * 32,
                    journal_head=head), metrics


def _count(metrics: Metrics, result: str) -> float:
    v = metrics.registry.get_sample_value("sentinel_attestations_total", {"result": result})
    return v or 0.0


def test_nothing_is_written_until_the_key_exists(site: Callable[..., Config]) -> None:
    config = site(schedules=COUNTING)
    clock = Clock(OPEN - HOUR)
    att, _ = _attestor(config, clock)
    assert att.maybe_attest() is None
    assert not config.in_state(Path("attestations")).exists()
    generate_keypair(config.in_state(config.attest.key_file))
    clock.t += 1
    path = att.maybe_attest()
    assert path is not None
    assert load_file(path)[0].statement["reason"] == "start"


def test_writes_at_start_each_boundary_and_interval(site: Callable[..., Config]) -> None:
    """Start, window open, interval, window close: one each; quiet seconds write nothing."""
    config = site(schedules=COUNTING, attest="interval: 6h\n")
    _, pub = generate_keypair(config.in_state(config.attest.key_file))
    clock = Clock(OPEN - 2 * HOUR)
    att, metrics = _attestor(config, clock)
    written: list[tuple[float, str]] = []

    def tick(seconds: float) -> None:
        clock.t += seconds
        path = att.maybe_attest(clock.t)
        if path is not None:
            written.append((clock.t, load_file(path)[0].statement["reason"]))

    tick(0)
    for _ in range(3):
        tick(1)
    tick(2 * HOUR - 4)  # one second before the counting window opens
    assert [r for _, r in written] == ["start"]
    tick(1)  # exactly at the opening
    assert written[-1] == (OPEN, "boundary")
    tick(1)
    tick(HOUR)
    assert len(written) == 2
    tick(5 * HOUR - 1)  # six hours after the last one
    assert written[-1] == (OPEN + 6 * HOUR, "interval")
    clock.t = CLOSE - 0.5  # long after the last one: the interval is due first
    tick(0)
    assert written[-1] == (CLOSE - 0.5, "interval")
    tick(1)  # crosses the closing one second later
    assert written[-1] == (CLOSE + 0.5, "boundary")
    assert [r for _, r in written] == ["start", "boundary", "interval", "interval", "boundary"]

    atts = load_folder(config.in_state(config.attest.dir))
    assert [a.sequence for a in atts] == [0, 1, 2, 3, 4]
    assert [a.statement["schedules"]["counting"]["active"] for a in atts] == \
        [False, True, True, True, False]
    assert atts[1].statement["schedules"]["counting"]["windows"] == [
        {"start": "2024-02-14T06:00:00.000Z", "end": "2024-02-15T16:59:00.000Z"}]
    assert [a.statement["journal"]["records"] for a in atts] == [0, 1, 2, 3, 4]
    report = verify_chain(atts[-1], atts, load_public_key(pub))
    assert report.ok, report.problems
    assert _count(metrics, "success") == 5
    assert metrics.registry.get_sample_value(
        "sentinel_attestation_last_timestamp_seconds") == CLOSE + 0.5


def test_a_jump_over_several_boundaries_writes_one(site: Callable[..., Config]) -> None:
    config = site(schedules=COUNTING)
    generate_keypair(config.in_state(config.attest.key_file))
    clock = Clock(OPEN - 60)
    att, _ = _attestor(config, clock)
    assert att.maybe_attest() is not None
    clock.t = CLOSE + 60  # e.g. the machine was suspended over the whole window
    assert att.maybe_attest() is not None
    assert att.maybe_attest() is None
    assert len(load_folder(config.in_state(config.attest.dir))) == 2


def test_a_failed_write_is_counted_and_retried_later(site: Callable[..., Config]) -> None:
    config = site(schedules=COUNTING)
    generate_keypair(config.in_state(config.attest.key_file))
    folder = config.in_state(config.attest.dir)
    folder.write_text("not a folder")  # the write must fail
    clock = Clock(OPEN - HOUR)
    att, metrics = _attestor(config, clock)
    assert att.maybe_attest() is None
    assert _count(metrics, "failure") == 1
    folder.unlink()
    clock.t += RETRY_AFTER - 1
    assert att.maybe_attest() is None  # not before the retry delay
    assert _count(metrics, "failure") == 1
    clock.t += 1
    path = att.maybe_attest()
    assert path is not None
    assert load_file(path)[0].statement["reason"] == "start"
    assert _count(metrics, "success") == 1


def test_the_statement_signs_the_baseline_merkle_root(site: Callable[..., Config],
                                                      tmp_path: Path) -> None:
    config = site()
    write_baseline(config.state_dir, make_files(tmp_path / "opt", 7))
    generate_keypair(config.in_state(config.attest.key_file))
    att, _ = _attestor(config, Clock(OPEN))
    path = att.maybe_attest()
    assert path is not None
    st = load_file(path)[0].statement
    tree = load_tree(config)
    assert isinstance(tree, MerkleTree)
    assert st["baseline"] == {"status": "ok", "merkle_root": tree.root.hex(), "leaf_count": 7,
                              "problem": None}
    assert st["host"] == "tally-01"
    assert st["rules_digest"] == "ab" * 32


def test_a_replaced_baseline_is_attested_as_invalid(site: Callable[..., Config],
                                                    tmp_path: Path) -> None:
    """A baseline re-made with another key (to hide a change) is not trusted: the
    statement says invalid, with no root."""
    config = site()
    files = make_files(tmp_path / "opt", 3)
    db = write_baseline(config.state_dir, files)
    db.unlink()
    Baseline.create(db, ("66" * 32).encode(), [record_of(f) for f in files]).close()
    generate_keypair(config.in_state(config.attest.key_file))
    att, _ = _attestor(config, Clock(OPEN))
    path = att.maybe_attest()
    assert path is not None
    base = load_file(path)[0].statement["baseline"]
    assert base["status"] == "invalid"
    assert base["merkle_root"] is None
    assert str(db) in base["problem"]


def test_no_baseline_is_attested_as_missing(site: Callable[..., Config]) -> None:
    config = site()
    generate_keypair(config.in_state(config.attest.key_file))
    att, _ = _attestor(config, Clock(OPEN))
    path = att.maybe_attest()
    assert path is not None
    assert load_file(path)[0].statement["baseline"]["status"] == "missing"


def test_a_reloaded_config_brings_its_boundaries_without_a_new_start(
        site: Callable[..., Config]) -> None:
    config = site()
    generate_keypair(config.in_state(config.attest.key_file))
    clock = Clock(OPEN - 60)
    att, _ = _attestor(config, clock)
    assert att.maybe_attest() is not None
    att.reconfigure(site(schedules=COUNTING))
    clock.t += 30
    assert att.maybe_attest() is None  # a reload is not a start
    clock.t += 30  # the counting window of the new config opens
    path = att.maybe_attest()
    assert path is not None
    assert load_file(path)[0].statement["reason"] == "boundary"
