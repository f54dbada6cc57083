"""Latency from a write to the FIM event, the rule engine's alert, the journal.

A separate writer process rewrites 100 watched files round-robin, 1,000
writes in all, a few milliseconds apart, noting CLOCK_MONOTONIC before each
open (system-wide, so comparable across processes) and the content's sha256.
Here the FIM source runs with the rule engine and the alert journal behind
its ``emit``, on a thread of their own behind a queue, as the daemon wires
them; each event is matched to its write by ``sha256_after``. As a baseline
in the same run,
the same writes are timed to a bare inotify reader (watchdog's, as sentinel
uses) that does nothing but note the time of each IN_CLOSE_WRITE.

Goal (issue 5): p99 write -> alert in the journal <= 50 ms.
Run: .venv/bin/python bench/fim_latency.py [--writes 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

WRITER = textwrap.dedent("""\
    import hashlib, json, os, sys, time
    root, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    out = []
    for i in range(n):
        data = f"write {i} {time.time_ns()}\\n".encode() * 8
        t0 = time.monotonic()
        with open(os.path.join(root, f"f{i % 100:03d}"), "wb") as fh:
            fh.write(data)
        out.append([hashlib.sha256(data).hexdigest(), t0, os.path.join(root, f"f{i % 100:03d}")])
        time.sleep(gap)
    print(json.dumps(out))
""")


def writes(root: Path, n: int, gap: float) -> list[list[Any]]:
    proc = subprocess.run([sys.executable, "-c", WRITER, str(root), str(n), str(gap)],
                          capture_output=True, text=True, check=True)
    result: list[list[Any]] = json.loads(proc.stdout)
    return result


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def show(name: str, lat: list[float]) -> None:
    ms = [x * 1000 for x in lat]
    print(f"  {name:34s} n={len(ms):4d}  p50 {pct(ms, 50):6.2f}  p90 {pct(ms, 90):6.2f}"
          f"  p99 {pct(ms, 99):6.2f}  max {max(ms):7.2f} ms")


def raw_inotify(root: Path, n: int, gap: float) -> list[float]:
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, InotifyFD

    seen: dict[str, float] = {}

    class Note:
        def on_event(self, ev: InotifyEvent) -> None:
            if ev.mask & InotifyConstants.IN_CLOSE_WRITE:
                p = os.path.join(str(root), os.fsdecode(ev.name))
                seen[p + ":" + hashlib.sha256(Path(p).read_bytes()).hexdigest()] = \
                    time.monotonic()

        def on_watch_deleted(self, wd: Any) -> None: ...

        def on_queue_overflow(self) -> None: ...

    fd = InotifyFD()
    fd.name = "bench-inotify"
    fd.start()
    fd.add_callback(os.fsencode(root), InotifyConstants.IN_CLOSE_WRITE, Note(), 1)  # type: ignore[arg-type]
    done = writes(root, n, gap)
    time.sleep(0.2)
    fd.stop()
    lat = [seen[f"{p}:{sha}"] - t0 for sha, t0, p in done if f"{p}:{sha}" in seen]
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=0.003, help="seconds between writes")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sentinel.config_reader import load_config
    from sentinel.engine import Engine, load_rules
    from sentinel.events import Event
    from sentinel.metrics import Metrics
    from sentinel.sinks import build_delivery
    from sentinel.sources.fim import build_fim_source

    tmp = Path(tempfile.mkdtemp(prefix="fim-latency-"))
    try:
        w = tmp / "w"
        w.mkdir()
        for i in range(100):
            (w / f"f{i:03d}").write_text("initial\n")
        (tmp / "rules").mkdir()
        (tmp / "rules" / "fim.yaml").write_text(textwrap.dedent("""\
            rules:
              - id: watched-file-modified
                title: Watched file modified
                severity: high
                kind: fim.modified
                match:
                  path_tags: bench
            """))
        cfg = tmp / "config.yaml"
        cfg.write_text(f"host: {{name: bench, addresses: [127.0.0.1]}}\nstate_dir: {tmp}/state\n"
                       f"fim:\n  paths: [{{path: {w}, tags: [bench]}}]\n"
                       "rules: {paths: [rules/]}\n")
        base = raw_inotify(w, args.writes, args.gap)

        config = load_config(cfg)
        metrics = Metrics()
        engine = Engine(load_rules(config), host="bench", metrics=metrics)
        delivery = build_delivery(config, metrics)  # the journal (fsync per record)
        events: dict[str, float] = {}
        alerts: dict[str, float] = {}
        journal: dict[str, float] = {}
        lock = threading.Lock()

        pending: queue.SimpleQueue[Event | None] = queue.SimpleQueue()

        def emit(ev: Event) -> None:  # the FIM worker's side, as in the daemon: enqueue
            with lock:
                events[f"{ev.fields.get('path')}:{ev.fields.get('sha256_after')}"] = \
                    time.monotonic()
            pending.put(ev)

        def engine_loop() -> None:  # the daemon's engine thread: rules, then the journal
            while (ev := pending.get()) is not None:
                key = f"{ev.fields.get('path')}:{ev.fields.get('sha256_after')}"
                out = engine.process(ev)
                t_alert = time.monotonic()
                for alert in out:
                    delivery.submit(alert)  # returns once the record is on disk
                t_journal = time.monotonic()
                if ev.ack is not None:  # as the daemon: the baseline may now take it in
                    ev.ack(True)
                if out:
                    with lock:
                        alerts[key] = t_alert
                        journal[key] = t_journal

        worker = threading.Thread(target=engine_loop, name="bench-engine", daemon=True)
        worker.start()
        src = build_fim_source(config, metrics)
        assert src is not None
        src.start(emit)
        done = writes(w, args.writes, args.gap)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(f"{p}:{s}" in journal for s, _, p in done):
            time.sleep(0.05)
        src.stop()
        pending.put(None)
        worker.join(timeout=30)
        delivery.close(10.0)
        lat_jr = [journal[f"{p}:{s}"] - t0 for s, t0, p in done if f"{p}:{s}" in journal]
        lat_ev = [events[f"{p}:{s}"] - t0 for s, t0, p in done if f"{p}:{s}" in events]
        lat_al = [alerts[f"{p}:{s}"] - t0 for s, t0, p in done if f"{p}:{s}" in alerts]
        print(f"{args.writes} writes to 100 watched files, {args.gap * 1000:.0f} ms apart;"
              f" {os.cpu_count()} cores; {os.getloadavg()[0]:.1f} load average")
        show("bare inotify reader (baseline)", base)
        show("write -> fim.modified event", lat_ev)
        show("write -> engine alert", lat_al)
        show("write -> alert in the journal", lat_jr)
        missing = args.writes - len(lat_ev)
        print(f"writes without their own event: {missing} (a rewrite before the first was"
              " read is one change)")
        p99 = pct(lat_jr, 99) * 1000
        verdict = "MET" if p99 <= 50 else "NOT MET"
        print(f"p99 write -> journal {p99:.2f} ms (goal <= 50 ms) {verdict}; event p99"
              f" {pct(lat_ev, 99) / max(pct(base, 99), 1e-9):.1f}x the bare reader's p99")
        print(f"median: {statistics.median(lat_ev) * 1000:.2f} ms event,"
              f" {statistics.median(base) * 1000:.2f} ms bare")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
