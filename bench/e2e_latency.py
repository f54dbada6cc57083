"""End-to-end latency and memory of `sentinel run`, in the namespace lab (needs root).

Runs the lab of tests/e2e (the reference site in network namespaces, real
webhook receivers) and measures, from the action to the webhook's receipt:

- 1,000 writes to watched files (one alert each, a lab rule without suppression);
- 1,000 forbidden connections from the tally server (one alert each).

The baseline, measured in the same run, is the floor of that path: the same
alert body POSTed straight to the same receiver from this process. Then a mixed
flood (connections, file writes, DNS queries) runs for --flood-seconds while the
daemon's RSS is sampled: before, after, peak, and the trend over the second half.

    python bench/e2e_latency.py [--n 1000] [--flood-seconds 600]

Goals: p99 <= 100 ms for files, <= 250 ms for connections; RSS <= 150 MB with no
growth trend.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.lab import Lab, needs_lab, wait_for  # noqa: E402
from tests.sinks.receiver import Receiver  # noqa: E402

FORBIDDEN = ("198.51.100.23", 9999)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def arrivals(receiver: Receiver, rule: str, key: str) -> dict[object, float]:
    out: dict[object, float] = {}
    for req in receiver.delivered():
        a = req.json()
        if a.get("rule") == rule:
            out.setdefault(a["event"].get(key), req.wall)
    return out


def measure_files(lab: Lab, n: int) -> list[float]:
    folder = lab.path("lab/bench")
    lat = []
    for i in range(n):
        f = folder / f"file-{i}.dat"
        t0 = time.time()
        f.write_bytes(b"x" * 512)
        got = wait_for(lambda f=f: arrivals(lab.bawaslu, "lab-bench-file-written", "path")
                       .get(str(f)), 10, f"alert for {f}")
        lat.append(got - t0)
    return lat


def measure_connections(lab: Lab, n: int) -> list[float]:
    lat = []
    for _ in range(n):
        t0 = time.time()
        with socket.create_connection(FORBIDDEN, timeout=2) as s:
            port = s.getsockname()[1]
        got = wait_for(lambda p=port: arrivals(lab.bawaslu, "lab-forbidden-port", "src_port")
                       .get(p), 10, f"alert for port {port}")
        lat.append(got - t0)
    return lat


def measure_floor(lab: Lab, n: int) -> list[float]:
    """The same alert body POSTed directly to a receiver: the path's floor."""
    body = json.dumps(lab.alerts_at(lab.bawaslu)[-1]).encode()
    lat = []
    with Receiver() as r:
        for _ in range(n):
            t0 = time.time()
            req = urllib.request.Request(r.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5):
                pass
            lat.append(r.requests[-1].wall - t0)
    return lat


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def flood(lab: Lab, seconds: float) -> list[tuple[float, float]]:
    """Mixed traffic and file writes for ``seconds``; (elapsed, RSS MB) samples."""
    assert lab.daemon.proc is not None
    pid = lab.daemon.proc.pid
    stop = time.monotonic() + seconds
    samples = [(0.0, rss_mb(pid))]
    start = time.monotonic()
    folder = lab.path("lab/bench")

    def conns() -> None:
        while time.monotonic() < stop:
            with contextlib.suppress(OSError):
                socket.create_connection(FORBIDDEN, timeout=2).close()
            time.sleep(0.02)

    def dns() -> None:
        q = (bytes.fromhex("abcd01000001000000000000")
             + b"\x03www\x03kpu\x02go\x02id\x00\x00\x01\x00\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while time.monotonic() < stop:
                s.sendto(q, ("10.20.0.2", 53))
                time.sleep(0.01)

    threads = [threading.Thread(target=conns, name="flood-conn"),
               threading.Thread(target=dns, name="flood-dns")]
    for t in threads:
        t.start()
    i = 0
    while time.monotonic() < stop:
        (folder / f"flood-{i % 500}.dat").write_bytes(str(i).encode())
        i += 1
        time.sleep(0.05)
        if time.monotonic() - start >= len(samples) * 10:
            samples.append((time.monotonic() - start, rss_mb(pid)))
    for t in threads:
        t.join()
    samples.append((time.monotonic() - start, rss_mb(pid)))
    return samples


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares MB per minute."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="actions of each kind (default 1000)")
    ap.add_argument("--flood-seconds", type=float, default=600.0,
                    help="length of the mixed flood (default 600; 0 skips it)")
    args = ap.parse_args()
    needs_lab()
    with tempfile.TemporaryDirectory(prefix="sentinel-e2e-bench-") as tmp, \
            Lab(Path(tmp), extra_rules=REPO / "tests" / "e2e" / "rules",
                # one alert per action is what is timed: storm control would fold them
                storm={"max_alerts": 1_000_000}) as lab:
        folder = lab.path("lab/bench")
        for i in range(args.n):  # created before: each measured write is one fim.modified
            (folder / f"file-{i}.dat").write_bytes(b"")
        time.sleep(2)
        files = measure_files(lab, args.n)
        conns = measure_connections(lab, args.n)
        floor = measure_floor(lab, args.n)
        f50, f99 = pct(floor, 50) * 1000, pct(floor, 99) * 1000
        print(f"baseline: direct POST to the receiver   p50 {f50:7.2f} ms  p99 {f99:7.2f} ms")
        for name, xs, goal in (("file write -> webhook", files, 100.0),
                               ("connection -> webhook", conns, 250.0)):
            p50, p99 = pct(xs, 50) * 1000, pct(xs, 99) * 1000
            print(f"{name:<24} n={len(xs)}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
                  f"  (x{p50 / f50:.1f} / x{p99 / f99:.1f} of the baseline;"
                  f" goal p99 <= {goal:.0f} ms: {'met' if p99 <= goal else 'MISSED'})")
        if args.flood_seconds > 0:
            samples = flood(lab, args.flood_seconds)
            before, after = samples[0][1], samples[-1][1]
            peak = max(s[1] for s in samples)
            half = [s for s in samples if s[0] >= args.flood_seconds / 2]
            trend = slope(half)
            print(f"RSS: before {before:.1f} MB, after {after:.1f} MB, peak {peak:.1f} MB"
                  f" over a {args.flood_seconds:.0f} s flood; trend over the second half"
                  f" {trend:+.2f} MB/min (goal <= 150 MB:"
                  f" {'met' if peak <= 150 else 'MISSED'})")
            delivered = len(lab.bawaslu.delivered())
            print(f"alerts delivered to one target during the run: {delivered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
