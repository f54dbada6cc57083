"""Live capture under load: does sentinel see every connection while a link is saturated?

Two network namespaces joined by a veth pair; the watched side ``a`` runs an
iperf3 server and a TCP listener, and sentinel captures on its veth end in a
process of its own (so its CPU is measured alone). From ``b``, iperf3 saturates
the link for ``--seconds`` while another process opens ``--connections`` TCP
connections to the listener, spread over that time. Prints connections seen /
opened, the kernel's drop count, packets captured, iperf3's throughput and
sentinel's CPU in cores (goal: all connections seen, under one core).

    .venv/bin/python bench/live.py [--seconds 10] [--connections 200]   (as root)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
A4, B4 = "10.77.0.1", "10.77.0.2"
AMAC, BMAC = "02:00:00:77:00:01", "02:00:00:77:00:02"
PORT = 9000

LISTENER = f"""
import socket
s = socket.create_server(("{A4}", {PORT}), backlog=512)
while True:
    c, _ = s.accept()
    c.close()
"""

CONNECTOR = f"""
import socket, sys, time
n, spread = int(sys.argv[1]), float(sys.argv[2])
ok = 0
start = time.monotonic()
for i in range(n):
    delay = start + spread * i / n - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        socket.create_connection(("{A4}", {PORT}), timeout=5).close()
        ok += 1
    except OSError as exc:
        print("connect failed:", exc, file=sys.stderr)
print(ok)
"""


def ns_run(ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def setup(a: str, b: str, va: str, vb: str, mtu_frames: bool = False) -> None:
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
        if mtu_frames:  # no segmentation offload: frames of at most the MTU, as on a wire
            sh("ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1")


def teardown(a: str, b: str) -> None:
    for ns in (a, b):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def child(iface: str) -> int:
    """The capture process: run the network source until stdin closes, then report."""
    from sentinel import logs

    logs.configure(stream=sys.stderr)  # stdout is the report; before loggers are bound
    from sentinel.config_reader import load_config
    from sentinel.events import Event
    from sentinel.metrics import Metrics
    from sentinel.sources.net import NetworkSource

    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "config.yaml"
        cfg.write_text(f"host: {{name: bench, addresses: [{A4}]}}\nstate_dir: {d}\n"
                       f"network: {{interfaces: [{iface}], home_nets: [10.77.0.0/24]}}\n")
        config = load_config(cfg)
    metrics = Metrics()
    seen: set[int] = set()
    counts = {"events": 0}

    def emit(ev: Event) -> None:
        counts["events"] += 1
        if ev.kind == "net.connection" and ev.fields["dst_port"] == PORT:
            seen.add(ev.fields["src_port"])

    src = NetworkSource(config, metrics)
    src.start(emit)
    time.sleep(0.5)
    print("ready", flush=True)
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdin.read()  # the parent closes stdin when the load is over
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    src.stop()
    reg = metrics.registry
    print(json.dumps({
        "seen": len(seen), "events": counts["events"], "wall": wall,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "packets": reg.get_sample_value("sentinel_packets_total", {"iface": iface}) or 0,
        "drops": reg.get_sample_value("sentinel_packets_dropped_total", {"iface": iface}) or 0,
        "decode_errors": reg.get_sample_value("sentinel_decode_errors_total") or 0,
    }), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--mtu-frames", action="store_true",
                    help="turn segmentation offload off, so capture sees MTU-sized frames as on"
                    " a physical link (veth otherwise passes up to 64 KiB per frame)")
    ap.add_argument("--udp", action="store_true",
                    help="a UDP stream of small (64-byte payload) datagrams at full speed: the"
                    " most packets per second iperf3 can make")
    ap.add_argument("--child", metavar="IFACE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    if os.geteuid() != 0:
        print("bench/live.py needs root (network namespaces)", file=sys.stderr)
        return 2
    tag = os.getpid() % 100000
    a, b, va, vb = f"bl-{tag}-a", f"bl-{tag}-b", f"bla{tag}", f"blb{tag}"
    procs: list[subprocess.Popen[str]] = []
    try:
        setup(a, b, va, vb, args.mtu_frames)
        procs.append(ns_run(a, sys.executable, "-c", LISTENER))
        procs.append(ns_run(a, "iperf3", "-s", "-1", stdout=subprocess.DEVNULL))
        cap = ns_run(a, sys.executable, str(Path(__file__).resolve()), "--child", va,
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(ROOT))
        procs.append(cap)
        assert cap.stdout is not None and cap.stdin is not None
        if cap.stdout.readline().strip() != "ready":
            print("capture process failed to start", file=sys.stderr)
            return 1
        time.sleep(0.3)  # iperf3 server listening
        udp = ["-u", "-b", "0", "-l", "64"] if args.udp else []
        iperf = ns_run(b, "iperf3", "-c", A4, "-t", str(args.seconds), "-J", *udp,
                       stdout=subprocess.PIPE)
        procs.append(iperf)
        time.sleep(0.5)  # let the stream reach full rate before connecting
        conn = ns_run(b, sys.executable, "-c", CONNECTOR, str(args.connections),
                      str(max(args.seconds - 1.5, 1.0)), stdout=subprocess.PIPE)
        procs.append(conn)
        opened = int((conn.communicate(timeout=args.seconds + 60)[0] or "0").strip() or 0)
        iperf_out = iperf.communicate(timeout=args.seconds + 60)[0]
        time.sleep(0.5)  # the ring hands over its last block within 50 ms
        report = threading.Timer(30, cap.kill)
        report.start()
        out, _ = cap.communicate(input="")
        report.cancel()
        result = json.loads(out.strip().splitlines()[-1])
        try:
            end = json.loads(iperf_out)["end"]
            gbps = end["sum" if args.udp else "sum_received"]["bits_per_second"] / 1e9
        except (ValueError, KeyError):
            gbps = float("nan")
        cores = result["cpu"] / result["wall"]
        frames = ("UDP, 64-byte datagrams" if args.udp else "MTU-sized frames"
                  if args.mtu_frames else "TCP, veth's offloaded frames (to 64 KiB)")
        print(f"iperf3 stream: {gbps:.2f} Gbit/s for {args.seconds:.0f} s, {frames}")
        print(f"connections seen / opened: {result['seen']} / {opened}"
              f"  (goal: {args.connections}/{args.connections})")
        print(f"kernel drops (PACKET_STATISTICS): {int(result['drops'])}")
        print(f"packets captured: {int(result['packets']):,}, events: {result['events']:,},"
              f" decode errors: {int(result['decode_errors'])}")
        print(f"sentinel CPU: {result['cpu']:.2f} s over {result['wall']:.1f} s ="
              f" {cores:.2f} cores  (goal: under 1)")
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
