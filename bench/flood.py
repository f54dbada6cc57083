"""A spoofed-SYN storm: what storm control leaves on disk, and a file alert's latency in it.

Replay (no root needed): --syns (default 300,000) SYNs to the tally database
(10.20.0.10:5432) from random spoofed sources, each a new suppression key, go
through ``sentinel replay --deliver`` with the default pack, the reference
site's lists, a journal and a JSON webhook to a receiver on loopback. Prints the
journal records, the bytes left in state_dir (journal and spool), the true
count (SYNs) against the summed ``count`` of the alerts, and the wall time.
The baseline, in the same run, is the same replay of --baseline-syns SYNs with
storm control off (no webhook: it would take minutes to deliver), scaled to the
flood's size. Goals: at most 1,000 journal records and 5 MB of state; the
counts add up to the true count. Then the rate: CPU seconds of replaying the
flood with the pack against the same replay without rules (the decoder, flows
and events alone), measured in the same run.

Live (--live, root; the namespace lab of tests/e2e): the same SYNs are sent
from the lab's attacker host through an AF_PACKET socket at the tally server
while ``sentinel run`` captures them; during the flood files are written under
a watched folder and each write's alert is timed to its webhook. The floor,
in the same run, is the same alert body POSTed straight to the same receiver.
Goal: a file alert reaches its webhook within 1 s during the flood. After the
flood the daemon stops (its stop flushes open storm summaries) and the journal
is counted as above, against the packets sentinel captured.

    python bench/flood.py [--syns 300000] [--baseline-syns 20000] [--live]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sinks.receiver import Receiver  # noqa: E402

TALLY_IP, TALLY_MAC, DB_PORT = bytes([10, 20, 0, 10]), "020000000010", 5432
# spoofed SYNs are never answered: attempts on the database port, not accepted connections
RULE = "tally-db-access-attempt"
T0 = 1_707_890_400.0  # inside the reference site's counting window


def _csum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def syn_frames(n: int, src_mac: str = "0200000000ee", seed: int = 5) -> list[bytes]:
    """``n`` Ethernet frames, each a SYN to the database from a random spoofed source."""
    rng = random.Random(seed)
    eth = bytes.fromhex(TALLY_MAC + src_mac + "0800")
    out = []
    for i in range(n):
        src = bytes([rng.randrange(1, 224), rng.randrange(256), rng.randrange(256),
                     rng.randrange(1, 255)])
        tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65535), DB_PORT,
                          rng.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = src + TALLY_IP + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, TALLY_IP)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        out.append(eth + ip + tcp)
    return out


def write_pcap(path: Path, frames: list[bytes], gap: float = 0.0001) -> None:
    """A classic pcap: 10,000 SYNs a second of packet time."""
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            ts = T0 + i * gap
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)


def site_config(folder: Path, storm: bool, webhook: str | None) -> Path:
    example = yaml.safe_load((REPO / "config.example.yaml").read_text())
    state = folder / "state"
    state.mkdir()
    outputs: dict[str, object] = {"journal": {"path": "alerts.jsonl"}}
    if webhook:
        outputs["webhooks"] = [{"name": "soc", "url": webhook, "format": "json"}]
    rules: dict[str, object] = {"paths": [str(REPO / "rules")]}
    if not storm:
        rules["storm"] = {"sources": []}
    cfg = folder / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "host": {"name": "tally-01", "addresses": ["10.20.0.10"]}, "state_dir": str(state),
        "network": {"home_nets": ["10.20.0.0/16"]}, "lists": example["lists"],
        "schedules": example["schedules"], "rules": rules, "outputs": outputs}))
    return cfg


def true_count(alert: dict[str, object]) -> int:
    """The events an alert adds: a suppression summary's count includes its first alert."""
    return int(alert["repeats"] if alert.get("summary") else alert["count"])  # type: ignore[call-overload]


def state_of(state: Path) -> tuple[int, int, int]:
    """(journal records, bytes under state_dir, summed count of the rule's journaled alerts)."""
    records, counted = 0, 0
    for line in (state / "alerts.jsonl").read_text().splitlines():
        records += 1
        alert = json.loads(line)["alert"]
        if alert["rule"] == RULE:
            counted += true_count(alert)
    used = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    return records, used, counted


def replay(folder: Path, n: int, storm: bool, webhook: str | None) -> tuple[float, int, int, int]:
    write_pcap(folder / "flood.pcap", syn_frames(n))
    cfg = site_config(folder, storm, webhook)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sentinel", "replay", "-c", str(cfg),
                           "--deliver", str(folder / "flood.pcap")], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"replay failed: {done.stderr[-2000:]}")
    return (wall, *state_of(folder / "state"))


def replay_mode(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sentinel-flood-") as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        b_wall, b_rec, b_bytes, _ = replay(base, args.baseline_syns, False, None)
        scale = args.syns / args.baseline_syns
        print(f"baseline, storm control off: {args.baseline_syns:,} SYNs -> {b_rec:,} journal"
              f" records, {b_bytes / 2**20:.1f} MB of state in {b_wall:.1f} s; scaled to"
              f" {args.syns:,}: {b_rec * scale:,.0f} records, {b_bytes * scale / 2**20:.0f} MB")
        flood = Path(tmp) / "flood"
        flood.mkdir()
        with Receiver() as soc:
            wall, rec, used, counted = replay(flood, args.syns, True, soc.url)
            delivered = len(soc.delivered())
        print(f"storm control on: {args.syns:,} SYNs -> {rec:,} journal records"
              f" (goal <= 1,000: {'met' if rec <= 1000 else 'MISSED'}),"
              f" {used / 2**20:.2f} MB of state (goal <= 5 MB:"
              f" {'met' if used <= 5 * 2**20 else 'MISSED'}), {delivered} webhook deliveries,"
              f" in {wall:.1f} s")
        print(f"true count {args.syns:,}; summed count of {RULE} alerts {counted:,}"
              f" ({'adds up' if counted == args.syns else 'DOES NOT add up'})")
        # the rate the daemon absorbs such a flood at: the same capture with the pack
        # (every SYN a new source, past the storm limit) and without rules (the
        # decoder, flows and events alone), CPU seconds, least of three
        pcap = flood / "flood.pcap"
        with_rules = cpu_of_replay(site_config(_fresh(Path(tmp) / "rate"), True, None), pcap)
        bare = site_config(_fresh(Path(tmp) / "bare"), True, None)
        doc = yaml.safe_load(bare.read_text())
        doc["rules"] = {"paths": []}
        bare.write_text(yaml.safe_dump(doc))
        without = cpu_of_replay(bare, pcap)
        print(f"flood rate: {args.syns / with_rules:,.0f} SYNs/s with the pack"
              f" ({with_rules:.2f} s CPU), {args.syns / without:,.0f} SYNs/s without rules"
              f" ({without:.2f} s): the pack keeps {without / with_rules:.0%} of the"
              f" decoder's rate")


def _fresh(folder: Path) -> Path:
    folder.mkdir()
    return folder


def cpu_of_replay(cfg: Path, pcap: Path) -> float:
    """CPU seconds of ``sentinel replay`` of ``pcap`` (no delivery), least of three."""
    best = float("inf")
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "sentinel", "replay", "-c", str(cfg), str(pcap)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


# -- live ------------------------------------------------------------------------------


def live_mode(args: argparse.Namespace) -> None:
    from bench.e2e_latency import arrivals, measure_floor, pct
    from tests.e2e.lab import Lab, needs_lab, wait_for

    needs_lab()
    frames = syn_frames(args.syns, src_mac="020000000066")
    with tempfile.TemporaryDirectory(prefix="sentinel-flood-live-") as tmp, \
            Lab(Path(tmp), extra_rules=REPO / "tests" / "e2e" / "rules") as lab:
        folder = lab.path("lab/bench")
        for i in range(args.writes):
            (folder / f"during-{i}.dat").write_bytes(b"")
        time.sleep(2)
        sent = [0]

        stop_at = time.monotonic() + args.live_seconds

        def send() -> None:
            def go() -> None:
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
                    s.bind(("eth0", 0))
                    while time.monotonic() < stop_at:  # the SYNs again and again
                        for f in frames:
                            try:
                                s.send(f)
                                sent[0] += 1
                            except OSError:  # the queue is full: try the next one
                                time.sleep(0.0005)
                            if sent[0] % 1000 == 0 and time.monotonic() >= stop_at:
                                return
            lab.on("attacker", go)

        flooder = threading.Thread(target=send, name="flood-syns")
        t_start = time.monotonic()
        flooder.start()
        lat = []
        while flooder.is_alive() and len(lat) < args.writes:
            f = folder / f"during-{len(lat)}.dat"
            t0 = time.time()
            f.write_bytes(b"written during the flood")
            got = wait_for(lambda f=f: arrivals(lab.bawaslu, "lab-bench-file-written", "path")
                           .get(str(f)), 30, f"alert for {f}")
            lat.append(got - t0)
            time.sleep(0.5)
        flooder.join()
        seconds = time.monotonic() - t_start
        floor = measure_floor(lab, 200)
        metrics, before = "", -1.0
        while True:  # until the engine has worked off its queue: the count stands still
            time.sleep(2)
            metrics = urllib.request.urlopen(
                f"http://127.0.0.1:{lab.metrics_port}/metrics", timeout=5).read().decode()
            now = _metric(metrics, 'sentinel_events_total{kind="net.connection",source="network"}')
            if now == before:
                break
            before = now
        captured = _metric(metrics, 'sentinel_packets_total{iface="eth0"}')
        syns = _metric(metrics,
                       'sentinel_events_total{kind="net.connection",source="network"}')
        dropped = _metric(metrics, 'sentinel_packets_dropped_total{iface="eth0"}')
        lab.daemon.stop()  # its stop flushes open storm summaries into the journal
        rec, used, counted = state_of(lab.state)
        print(f"live flood: {sent[0]:,} spoofed SYNs sent in {seconds:.1f} s; sentinel captured"
              f" {captured:,.0f} packets (the SYNs that reached the tally server and its"
              f" resets), the capture ring dropped {dropped:,.0f}; {syns:,.0f} connection"
              " events")
        if lat:
            p50, p99, worst = pct(lat, 50), pct(lat, 99), max(lat)
            print(f"file write -> webhook during the flood: n={len(lat)} p50 {p50 * 1000:.0f} ms"
                  f" p99 {p99 * 1000:.0f} ms max {worst * 1000:.0f} ms (floor: direct POST p50"
                  f" {pct(floor, 50) * 1000:.1f} ms; goal max <= 1 s:"
                  f" {'met' if worst <= 1.0 else 'MISSED'})")
        print(f"journal: {rec:,} records (goal <= 1,000), {used / 2**20:.2f} MB of state"
              f" (goal <= 5 MB); summed count of {RULE} alerts {counted:,} for {syns:,.0f}"
              f" connection events ({sent[0]:,} SYNs sent; the rest were dropped by the"
              " capture ring, counted above, or on the lab's virtual links)")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syns", type=int, default=300_000)
    ap.add_argument("--baseline-syns", type=int, default=20_000)
    ap.add_argument("--live", action="store_true", help="also flood the live daemon (root)")
    ap.add_argument("--writes", type=int, default=20, help="file writes timed during the flood")
    ap.add_argument("--live-seconds", type=float, default=20.0, help="length of the live flood")
    ap.add_argument("--no-replay", action="store_true", help="only the live flood")
    args = ap.parse_args()
    if not args.no_replay:
        replay_mode(args)
    if args.live:
        live_mode(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
