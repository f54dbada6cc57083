"""The cost of naming the process behind each connection (attribution.connections).

Two network namespaces joined by a veth pair; ``b`` accepts and keeps TCP
connections. In ``a`` the live network source captures with
``attribution.connections`` on, while ``--connections`` processes (forked,
one per connection, spread over ``--seconds``) each open one connection to
``b`` and stay alive until the end. Prints how many connection events name
the right process, how many say why not (``process_unknown``), and none
missing; the lookups per second and the cost of one lookup, as ratios against
two baselines measured in the same run for the same live sockets: one
``ss -tnpH`` call (what an operator, or a naive implementation, runs per
connection) and one full pass of /proc; and the delay the lookup adds to an
event (from the source handing it over to the engine getting it).

    .venv/bin/python bench/attribution_connections.py [--connections 200] [--seconds 5]
    (as root)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
A4, B4 = "10.78.0.1", "10.78.0.2"
AMAC, BMAC = "02:00:00:78:00:01", "02:00:00:78:00:02"
PORT = 9000

LISTENER = f"""
import socket
s = socket.create_server(("{B4}", {PORT}), backlog=1024)
kept = []
while True:
    kept.append(s.accept()[0])
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def setup(a: str, b: str, va: str, vb: str) -> None:
    for ns in (a, b):
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", va, "netns", a, "address", AMAC, "type", "veth", "peer", "name", vb,
       "netns", b, "address", BMAC)
    for ns, dev, mine, peer, peer_mac in ((a, va, A4, B4, BMAC), (b, vb, B4, A4, AMAC)):
        sh("ip", "-n", ns, "addr", "add", f"{mine}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "neigh", "replace", peer, "lladdr", peer_mac, "dev", dev, "nud",
           "permanent")


def teardown(a: str, b: str) -> None:
    for ns in (a, b):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def connector(report: int, hold: int) -> None:
    """A forked child: one connection, its port and pid to the parent, then wait."""
    import socket

    try:
        s = socket.create_connection((B4, PORT), timeout=5)
        os.write(report, f"{s.getsockname()[1]} {os.getpid()}\n".encode())
        os.close(report)  # the parent reads until every child has closed it
        os.read(hold, 1)  # returns when the parent closes the pipe
    finally:
        os._exit(0)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def timed(fn: Any, repeat: int) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def child(iface: str, n: int, seconds: float) -> int:
    from sentinel import logs

    logs.configure(stream=sys.stderr)  # stdout is the report; before loggers are bound
    from sentinel.config_reader import load_config
    from sentinel.events import Event
    from sentinel.metrics import Metrics
    from sentinel.sources.net import NetworkSource
    from sentinel.sources.net.procs import ProcIndex

    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "config.yaml"
        cfg.write_text(f"host: {{name: bench, addresses: [{A4}]}}\nstate_dir: {d}\n"
                       f"network: {{interfaces: [{iface}], home_nets: [10.78.0.0/24]}}\n"
                       "attribution: {connections: true}\n")
        config = load_config(cfg)
    metrics = Metrics()
    src = NetworkSource(config, metrics)
    owners = src.owners
    assert owners is not None
    lock = threading.Lock()
    events: dict[int, dict[str, Any]] = {}
    submitted: dict[int, float] = {}
    delays: list[float] = []
    costs: list[tuple[float, int]] = []

    def emit(ev: Event) -> None:
        if ev.kind == "net.connection" and ev.fields["dst_port"] == PORT:
            with lock:
                events[ev.fields["src_port"]] = dict(ev.fields)
                if id(ev) in submitted:
                    delays.append(time.monotonic() - submitted.pop(id(ev)))

    submit, resolve = owners.submit, owners.resolve

    def timed_submit(ev: Event, to: Any) -> None:
        with lock:
            submitted[id(ev)] = time.monotonic()
        submit(ev, to)

    def timed_resolve(evs: list[Event]) -> list[dict[str, Any]]:
        t = time.perf_counter()
        out = resolve(evs)
        costs.append((time.perf_counter() - t, len(evs)))
        return out

    owners.submit = timed_submit  # type: ignore[method-assign]
    owners.resolve = timed_resolve  # type: ignore[method-assign]
    src.start(emit)
    time.sleep(0.3)
    report_r, report_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pids = []
    start = time.monotonic()
    for i in range(n):
        delay = start + seconds * i / n - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pid = os.fork()
        if pid == 0:
            os.close(hold_w)
            os.close(report_r)
            connector(report_w, hold_r)
        pids.append(pid)
    os.close(report_w)
    os.close(hold_r)
    with os.fdopen(report_r) as f:
        opened = dict(tuple(map(int, line.split())) for line in f if line.strip())
    time.sleep(1.0)  # the ring hands over its last block within 50 ms; lookups follow
    src.stop()
    # baselines, with the same sockets still open
    ss_out = subprocess.run(["ss", "-tnpH", "dst", B4], capture_output=True, text=True,
                            check=True).stdout
    ss_pids = {int(p) for p in re.findall(r"pid=(\d+)", ss_out)}
    ss_cost = timed(lambda: subprocess.run(["ss", "-tnpH"], capture_output=True, check=True),
                    10)

    def full_pass() -> None:
        ProcIndex().find([2**40], deadline=float("inf"))  # an inode nobody holds: every pid

    processes = len([p for p in os.listdir("/proc") if p.isdigit()])
    scan_cost = timed(full_pass, 10)
    os.close(hold_w)
    for pid in pids:
        os.waitpid(pid, 0)
    right = sum(1 for port, pid in opened.items()
                if events.get(port, {}).get("process_pid") == pid)
    wrong = sum(1 for port, pid in opened.items()
                if events.get(port, {}).get("process_pid") not in (None, pid))
    reasons: dict[str, int] = {}
    for port in opened:
        why = events.get(port, {}).get("process_unknown")
        if why:
            reasons[why] = reasons.get(why, 0) + 1
    lookups = sum(k for _, k in costs)
    spent = sum(t for t, _ in costs)
    print(json.dumps({
        "opened": len(opened), "seen": sum(1 for p in opened if p in events),
        "resolved": right, "wrong": wrong, "reasons": reasons,
        "ss_named": len(ss_pids & set(opened.values())),
        "lookups": lookups, "spent": spent, "ss_cost": ss_cost, "scan_cost": scan_cost,
        "delay_p50": percentile(delays, 0.5), "delay_p99": percentile(delays, 0.99),
        "deadline": owners.deadline, "processes": processes,
    }), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--child", metavar="IFACE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.connections, args.seconds)
    if os.geteuid() != 0:
        print("bench/attribution_connections.py needs root (network namespaces)",
              file=sys.stderr)
        return 2
    tag = os.getpid() % 100000
    a, b, va, vb = f"ba-{tag}-a", f"ba-{tag}-b", f"baa{tag}", f"bab{tag}"
    procs: list[subprocess.Popen[str]] = []
    try:
        setup(a, b, va, vb)
        procs.append(subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c",
                                       LISTENER], text=True))
        time.sleep(0.3)
        cap = subprocess.Popen(["ip", "netns", "exec", a, sys.executable,
                                str(Path(__file__).resolve()), "--child", va,
                                "--connections", str(args.connections), "--seconds",
                                str(args.seconds)], text=True, stdout=subprocess.PIPE,
                               cwd=str(ROOT))
        procs.append(cap)
        out, _ = cap.communicate(timeout=args.seconds + 120)
        r = json.loads(out.strip().splitlines()[-1])
        explained = sum(r["reasons"].values())
        per = r["spent"] / max(r["lookups"], 1)
        print(f"connections opened / seen: {r['opened']} / {r['seen']}")
        print(f"named (right pid): {r['resolved']}, explained (process_unknown):"
              f" {explained} {r['reasons']}, wrong pid: {r['wrong']},"
              f" neither: {r['opened'] - r['resolved'] - explained - r['wrong']}"
              "  (goal: all named or explained, none wrong)")
        print(f"ss -tnpH named {r['ss_named']} of the same {r['opened']} sockets (cross-check)")
        print(f"lookups: {r['lookups']} in {r['spent'] * 1e3:.1f} ms of the worker ="
              f" {r['lookups'] / max(r['spent'], 1e-9):,.0f} lookups/s,"
              f" {per * 1e6:.0f} us each")
        print(f"baseline, one `ss -tnpH` call: {r['ss_cost'] * 1e3:.2f} ms ="
              f" {r['ss_cost'] / per:.1f}x one lookup")
        print(f"baseline, one full /proc pass ({r['processes']} processes):"
              f" {r['scan_cost'] * 1e3:.2f} ms = {r['scan_cost'] / per:.1f}x one lookup")
        print(f"delay added to an event (source -> engine): p50"
              f" {r['delay_p50'] * 1e3:.2f} ms, p99 {r['delay_p99'] * 1e3:.2f} ms"
              f" (deadline {r['deadline'] * 1e3:.0f} ms)")
        print(f"cpus: {os.cpu_count()}")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        teardown(a, b)


if __name__ == "__main__":
    sys.exit(main())
