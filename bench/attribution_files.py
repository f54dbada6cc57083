"""The cost of naming who changed a file: write -> journal latency without and with
attribution (kernel audit), in the same run.

A separate writer process (forked after audit is on, so it is audited) rewrites
100 watched files round-robin, a few milliseconds apart, noting
CLOCK_MONOTONIC before each open, as bench/fim_latency.py does, then deletes
as many files one by one (a deletion's record can come after its inotify event:
the path where attribution may wait for the kernel). Behind the FIM
source run the rule engine and the alert journal, as the daemon wires them.
Run 1: attribution.files off (the baseline); run 2: attribution.files audit. Each
event of run 2 must name the writer's pid.

Needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ) in the host's network namespace;
audit is left as found (sentinel deletes its rules and switches audit off again
if it switched it on).

Goal (#19): p99 write -> alert in the journal with attribution <= 50 ms.
Run: .venv/bin/python bench/attribution_files.py [--writes 500]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fim_latency import pct, show, writes

DELETER = textwrap.dedent("""\
    import json, os, sys, time
    root, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    out = []
    for i in range(n):
        path = os.path.join(root, f"d{i:04d}")
        t0 = time.monotonic()
        os.unlink(path)
        out.append([None, t0, path])
        time.sleep(gap)
    print(json.dumps(out))
""")


def deletes(root: Path, n: int, gap: float) -> list[list[Any]]:
    proc = subprocess.run([sys.executable, "-c", DELETER, str(root), str(n), str(gap)],
                          capture_output=True, text=True, check=True)
    result: list[list[Any]] = json.loads(proc.stdout)
    return result


def run(tmp: Path, attribution: bool, n: int, gap: float) -> tuple[list[float], int, int]:
    """(change -> journal latencies, events naming the writer, events) of one run."""
    from sentinel.config_reader import load_config
    from sentinel.engine import Engine, load_rules
    from sentinel.events import Event
    from sentinel.metrics import Metrics
    from sentinel.sinks import build_delivery
    from sentinel.sources.fim import build_fim_source

    root = tmp / ("with" if attribution else "without")
    w = root / "w"
    w.mkdir(parents=True)
    for i in range(100):
        (w / f"f{i:03d}").write_text("initial\n")
    for i in range(n):
        (w / f"d{i:04d}").write_text("to be deleted\n")
    (root / "rules").mkdir()
    (root / "rules" / "fim.yaml").write_text(textwrap.dedent("""\
        rules:
          - id: watched-file-modified
            title: Watched file modified by {process_exe}
            severity: high
            kind: [fim.modified, fim.deleted]
            match:
              path_tags: bench
        """))
    cfg = root / "config.yaml"
    cfg.write_text(f"host: {{name: bench, addresses: [127.0.0.1]}}\nstate_dir: {root}/state\n"
                   f"fim:\n  paths: [{{path: {w}, tags: [bench]}}]\n"
                   "rules: {paths: [rules/]}\n"
                   + ("attribution: {files: audit}\n" if attribution else ""))
    config = load_config(cfg)
    metrics = Metrics()
    engine = Engine(load_rules(config), host="bench", metrics=metrics)
    delivery = build_delivery(config, metrics)
    journal: dict[str, float] = {}
    named: dict[str, Any] = {}
    lock = threading.Lock()
    pending: queue.SimpleQueue[Event | None] = queue.SimpleQueue()

    def engine_loop() -> None:
        while (ev := pending.get()) is not None:
            key = f"{ev.fields.get('path')}:{ev.fields.get('sha256_after')}"
            out = engine.process(ev)
            for alert in out:
                delivery.submit(alert)
            t_journal = time.monotonic()
            if ev.ack is not None:
                ev.ack(True)
            if out:
                with lock:
                    journal[key] = t_journal
                    named[key] = ev.fields.get("process_pid")

    worker = threading.Thread(target=engine_loop, name="bench-engine", daemon=True)
    worker.start()
    src = build_fim_source(config, metrics)
    assert src is not None
    src.start(pending.put)
    if attribution and src.components() != {"attribution": True}:
        assert src.attribution is not None
        print(f"attribution is down: {src.attribution.reason}")
    done = writes(w, n, gap) + deletes(w, n, gap)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(f"{p}:{s}" in journal for s, _, p in done):
        time.sleep(0.05)
    src.stop()
    pending.put(None)
    worker.join(timeout=30)
    delivery.close(10.0)
    lat = [journal[f"{p}:{s}"] - t0 for s, t0, p in done if f"{p}:{s}" in journal]
    keys = [f"{p}:{s}" for s, _, p in done if f"{p}:{s}" in journal]
    return lat, sum(1 for k in keys if named.get(k) is not None), len(keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=500)
    ap.add_argument("--gap", type=float, default=0.003, help="seconds between writes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: kernel audit (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)")
    tmp = Path(tempfile.mkdtemp(prefix="attribution-latency-"))
    try:
        base, _, n_base = run(tmp, False, args.writes, args.gap)
        lat, named, n = run(tmp, True, args.writes, args.gap)
        print(f"{args.writes} writes to 100 watched files then {args.writes} deletions,"
              f" {args.gap * 1000:.0f} ms apart;"
              f" {os.cpu_count()} cores; {os.getloadavg()[0]:.1f} load average")
        show("change -> journal, attribution off", base)
        show("change -> journal, attribution audit", lat)
        print(f"events naming their writer: {named} of {n} (off: {n_base} events)")
        p99, p99_base = pct(lat, 99) * 1000, pct(base, 99) * 1000
        verdict = "MET" if p99 <= 50 else "NOT MET"
        print(f"p99 change -> journal with attribution {p99:.2f} ms (goal <= 50 ms) {verdict};"
              f" {p99 / max(p99_base, 1e-9):.2f}x the p99 without ({p99_base:.2f} ms);"
              f" p50 {pct(lat, 50) / max(pct(base, 50), 1e-9):.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
