"""Storm control: past a rule's limit its alerts fold into periodic summaries that carry
the true count and a sample of keys; spoofed sources cannot defeat it; file alerts are
not folded; one log line when a storm starts and one when it ends."""

from __future__ import annotations

import json
import logging
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from enginekit import conn, ev, load, rule
from prometheus_client import CollectorRegistry

from sentinel.config import StormConfig
from sentinel.config_reader import load_config
from sentinel.engine import Engine
from sentinel.located import ProblemError
from sentinel.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DB = rule("""
dst_ip: 10.20.0.10
dst_port: 5432
""", extra="suppress: {key: src_ip, period: 10m}", rid="db")
LIMIT = StormConfig(max_alerts=100, period=60.0, sample=10)


def spoofed(n: int, t0: float = 0.0, step: float = 0.01) -> list:
    return [conn(t0 + i * step, dst_port=5432, src_ip=f"198.{18 + i // 65536}.{i // 256 % 256}"
                 f".{i % 256}") for i in range(n)]


def test_past_the_limit_alerts_fold_into_a_summary_with_the_true_count(tmp_path: Path) -> None:
    """1,000 spoofed sources: 100 alerts, then one summary of 900 with a sample of keys."""
    eng = Engine(load(tmp_path, DB), storm=LIMIT)
    out = [a for e in spoofed(1000) for a in eng.process(e)]
    assert len(out) == 100 and all(a.count == 1 for a in out)
    summary = eng.advance(61.0)
    assert len(summary) == 1
    s = summary[0]
    assert (s.rule, s.count, s.extra["storm"], s.extra["folded_alerts"]) == ("db", 900, True, 900)
    assert s.extra["sample"][0] == {"src_ip": "198.18.0.100"} and len(s.extra["sample"]) == 10
    assert "alert storm" in s.title
    assert sum(a.count for a in out + summary) == 1000


def test_a_long_storm_summarises_each_period_and_counts_add_up(tmp_path: Path) -> None:
    """3,500 alerts over 3.5 periods: each period lets 100 through and sums up the rest."""
    eng = Engine(load(tmp_path, DB), storm=LIMIT)
    out = []
    for e in spoofed(3500, step=0.06):
        out += eng.advance(e.time)
        out += eng.process(e)
    out += eng.flush(300.0)
    summaries = [a for a in out if a.extra.get("storm")]
    assert len(summaries) == 4
    assert len(out) - len(summaries) == 400
    assert sum(a.count for a in out) == 3500


def true_count(a: dict[str, Any]) -> int:
    """What an alert adds to the events counted: a suppression summary's ``count``
    includes its first alert, counted on its own, so it adds its ``repeats``."""
    return int(a["repeats"] if a.get("summary") else a["count"])


def test_suppression_summaries_in_a_storm_add_only_their_repeats(tmp_path: Path) -> None:
    """300 sources, 4 SYNs each: 300 first alerts, then 300 summaries at the period's end
    (count 4, repeats 3); past the limit both fold, and every SYN is counted once."""
    eng = Engine(load(tmp_path, DB), storm=LIMIT)
    events = [e for rep in range(4) for e in spoofed(300, t0=rep * 3.0, step=0.001)]
    out = [a for e in events for a in eng.process(e)]
    out += eng.flush(30.0)
    shown = [a.to_dict() for a in out]
    assert sum(1 for a in shown if a.get("summary")) <= 100
    assert sum(true_count(a) for a in shown) == 1200


def test_storm_start_and_end_are_logged_once_and_shown_in_metrics(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, DB), storm=LIMIT, metrics=Metrics(reg))
    caplog.set_level(logging.WARNING, logger="sentinel.engine")
    for e in spoofed(500):
        eng.process(e)
        eng.advance(e.time)
    labels = {"rule": "db"}
    assert reg.get_sample_value("sentinel_alert_storm", labels) == 1
    assert reg.get_sample_value("sentinel_alerts_storm_folded_total", labels) == 400
    eng.advance(61.0)  # the summary; the storm goes on until a period passes with nothing
    eng.advance(122.0)
    assert reg.get_sample_value("sentinel_alert_storm", labels) == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs.count("alert_storm_started") == 1 and msgs.count("alert_storm_ended") == 1


def test_file_alerts_are_never_folded_by_default(tmp_path: Path) -> None:
    """An attacker who writes many files must not hide the one implant in a summary."""
    text = rule("path_tags: tally-binaries", kind="fim.created", rid="bin")
    eng = Engine(load(tmp_path, text), storm=LIMIT)
    out = [a for i in range(500) for a in eng.process(
        ev("fim.created", i * 0.01, path=f"/opt/tally/bin/x{i}", path_tags=["tally-binaries"]))]
    assert len(out) == 500


def test_stop_flushes_an_open_storm(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, DB), storm=LIMIT)
    out = [a for e in spoofed(250) for a in eng.process(e)]
    out += eng.flush(5.0)
    assert [a.count for a in out if a.extra.get("storm")] == [150]
    assert eng.flush(6.0) == []


def test_storm_config_is_read_and_bad_values_are_positioned(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"state_dir: {tmp_path}\nrules:\n  storm: {{max_alerts: 5, period: 10s,"
                   " sources: [network, fim]}\n")
    got = load_config(cfg).rules.storm
    assert (got.max_alerts, got.period, got.sources) == (5, 10.0, frozenset({"network", "fim"}))
    cfg.write_text(f"state_dir: {tmp_path}\nrules:\n  storm: {{max_alerts: 0,"
                   " sources: [disk]}\n")
    with pytest.raises(ProblemError) as exc:
        load_config(cfg)
    shown = "\n".join(str(p) for p in exc.value.problems)
    assert f"{cfg}:3:" in shown and "max_alerts" in shown and "valid: network, fim" in shown


# -- a real flood through `sentinel replay --deliver` ------------------------------


def _csum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def syn_frames(n: int, t0: float, seed: int = 5) -> list[tuple[float, bytes]]:
    """``n`` SYNs to the tally database from random spoofed sources (built by hand: fast)."""
    rng = random.Random(seed)
    dst = bytes([10, 20, 0, 10])
    eth = bytes.fromhex("020000000010" "0200000000ee" "0800")
    out = []
    for i in range(n):
        src = bytes([rng.randrange(1, 224), rng.randrange(256), rng.randrange(256),
                     rng.randrange(1, 255)])
        tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65535), 5432, rng.getrandbits(32),
                          0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        out.append((t0 + i * 0.0005, eth + ip + tcp))
    return out


def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in frames:
        sec = int(ts)
        parts.append(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame))
                     + frame)
    path.write_bytes(b"".join(parts))
    return path


def test_20000_spoofed_syns_through_replay_give_bounded_records_whose_counts_add_up(
        tmp_path: Path) -> None:
    """The default pack, the reference site's lists, a journal: a few hundred records, not
    20,000, and the alerts' counts add up to the 20,000 SYNs."""
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "host": {"name": "tally-01", "addresses": ["10.20.0.10"]}, "state_dir": str(state),
        "network": {"home_nets": ["10.20.0.0/16"]}, "lists": example["lists"],
        "schedules": example.get("schedules", {}),
        "rules": {"paths": [str(ROOT / "rules")]},
        "outputs": {"journal": {"path": "alerts.jsonl", "fsync": "none"}}}))
    pcap = write_pcap(tmp_path / "flood.pcap", syn_frames(20_000, 1_707_890_400.0))
    done = subprocess.run([sys.executable, "-m", "sentinel", "replay", "-c", str(cfg),
                           "--deliver", str(pcap)], capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines()]
    # unanswered SYNs to the database port: attempts, not accepted connections
    db = [a for a in alerts if a["rule"] == "tally-db-access-attempt"]
    assert sum(true_count(a) for a in db) == 20_000
    storms = [a for a in db if a.get("storm")]
    assert storms and all(len(a["sample"]) == 10 for a in storms)
    records = (state / "alerts.jsonl").read_text().splitlines()
    assert len(records) <= 300, len(records)
    used = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    assert used < 5 * 2**20, used


def test_a_reload_that_changes_or_removes_a_rule_keeps_its_folded_counts(
        tmp_path: Path) -> None:
    """Its open suppression and storm periods close at the reload; the next advance
    brings their summaries, so every SYN is still counted once."""
    eng = Engine(load(tmp_path, DB), storm=LIMIT)
    events = [e for rep in range(2) for e in spoofed(150, t0=rep * 2.0, step=0.001)]
    shown = [a.to_dict() for e in events for a in eng.process(e)]
    eng.swap(load(tmp_path, DB.replace("period: 10m", "period: 5m")))
    shown += [a.to_dict() for a in eng.advance(10.0)]
    assert any(a.get("storm") for a in shown)
    assert sum(true_count(a) for a in shown) == 300
    eng.swap(load(tmp_path, "rules: []\n", name="none.yaml"))
    assert eng.advance(11.0) == []


def test_a_suppression_summary_sent_early_at_the_cap_is_dated_now(tmp_path: Path) -> None:
    """Dated at its period's end (10 minutes ahead) it would jump a storm's clock forward:
    the storm would end and start again, letting another 100 alerts through."""
    text = rule("dst_port: 5432", extra="suppress: {key: src_ip, period: 10m, max_keys: 1}")
    eng = Engine(load(tmp_path, text), storm=LIMIT)
    eng.process(conn(0, dst_port=5432, src_ip="10.0.0.1"))
    eng.process(conn(1, dst_port=5432, src_ip="10.0.0.1"))
    alerts = eng.process(conn(2, dst_port=5432, src_ip="10.0.0.2"))
    assert [(a.count, a.time) for a in alerts] == [(2, 2.0), (1, 2.0)]


def test_a_reload_that_changes_the_storm_limit_applies_it_and_keeps_the_counts(
        tmp_path: Path) -> None:
    """rules.storm read at a reload takes effect: the open storm ends with its summary
    (no SYN lost) and the next alerts are counted against the new limit."""
    rules = load(tmp_path, DB.replace("suppress: {key: src_ip, period: 10m}", ""))
    eng = Engine(rules, storm=LIMIT)
    first = [a for e in spoofed(300) for a in eng.process(e)]
    assert len(first) == 100  # the old limit: 100 through, 200 folded
    eng.swap(rules, storm=StormConfig(max_alerts=10, period=60.0, sample=10))
    closed = eng.advance(3.5)
    assert [a.count for a in closed] == [200] and closed[0].extra["storm"]
    later = [a for e in spoofed(50, t0=4.0) for a in eng.process(e)]
    assert len(later) == 10  # the new limit
    rest = eng.flush(100.0)
    assert sum(a.count for a in first + closed + later + rest) == 350
    eng.swap(rules, storm=None)  # storm control off: every alert goes out
    assert len([a for e in spoofed(30, t0=200.0) for a in eng.process(e)]) == 30


def test_a_folded_alert_is_not_built_unless_a_summary_names_it(tmp_path: Path,
                                                                monkeypatch: Any) -> None:
    """A flood from ever new sources costs a count per event past the limit, not a whole
    alert (title and texts in every language, the event copied, an id) built and dropped:
    only the first folded alert is built (the storm summary quotes it), and a folded
    source's own first alert only when its suppression summary must name it."""
    built: list[str] = []
    make = Engine._alert

    def counting(self: Engine, *args: Any) -> Any:
        a = make(self, *args)
        built.append(a.event["src_ip"])
        return a
    monkeypatch.setattr(Engine, "_alert", counting)
    eng = Engine(load(tmp_path, DB), storm=LIMIT)
    out = [a for e in spoofed(1000) for a in eng.process(e)]
    assert len(out) == 100 and len(built) == 101  # the 100 let through, the first folded
    # a repeat from a source whose first alert was folded unbuilt: its period's summary
    # names that first alert, built now from its own event
    out = eng.process(conn(9.0, dst_port=5432, src_ip="198.18.2.0"))
    assert out == [] and built[-1] == "198.18.0.100" and len(built) == 101
    ended = eng.flush(30.0)
    summaries = [a for a in ended if a.extra.get("summary")]
    storm = [a for a in ended if a.extra.get("storm")]
    # the suppression summary (count 2, one repeat) is itself folded by the storm
    assert summaries == [] and len(storm) == 1
    assert storm[0].count == 900 + 1 and storm[0].extra["folded_alerts"] == 901
    assert "198.18.2.0" in built  # built for its summary, which the storm counted


def test_lazily_built_first_alerts_read_as_built_ones(tmp_path: Path) -> None:
    """A suppression summary whose first alert was folded unbuilt is the same, but for
    its ids, as the one the engine made when it built every alert: the first alert is
    built from its own event and time, not the one that ends its period."""
    events = [*spoofed(150), *(conn(20.0 + i, dst_port=5432, src_ip="198.18.0.120")
                               for i in range(3))]

    def run(limit: StormConfig | None) -> list[Any]:
        eng = Engine(load(tmp_path, DB), storm=limit)
        out = [a for e in events for a in eng.process(e)]
        return out + eng.flush(700.0)

    wide = StormConfig(max_alerts=10_000, period=60.0, sample=10)
    every = {(a.extra.get("summary"), a.event["src_ip"]): a for a in run(wide)}
    # at the limit of 100, the storm folds source .120's first alert unbuilt; once the
    # window ends (flush at 700 s) its suppression summary passes: compare with the
    # same summary when nothing was folded
    folded = {(a.extra.get("summary"), a.event["src_ip"]): a for a in run(LIMIT)}
    key = (True, "198.18.0.120")
    assert key in every and key in folded
    a, b = every[key], folded[key]
    assert (a.title, a.count, a.time, a.event, a.extra["repeats"]) == (
        b.title, b.count, b.time, b.event, b.extra["repeats"])
    assert a.event["time"] == b.event["time"]
