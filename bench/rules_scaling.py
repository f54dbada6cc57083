"""How the engine's per-event cost grows with the number of rules.

Synthetic: the same 200,000-event stream (connections, DNS queries, flows) goes
through 10 rules and through 1,000 rules of the kinds a site writes: CIDR and
port tests, named lists of addresses and names, port lists, and thresholds.
Prints events/s for each, the ratio of per-event cost (goal: at most 2), and
events/s for the default rule pack in rules/.

Realistic: the default pack x N (N = 1, 10, 31): each rule of rules/ copied N
times with distinct ids, copy k naming the list ``tally_server_k`` (holding
10.77.k.10) where the pack names ``tally_server``, over the events of
bench/replay.py's traffic (its capture generator, decoded by the live decoder
and flow table). Prints the engine share per event (time minus the same loop
with no rules) for each N and the ratio pack x 31 / pack (goal: at most 2),
the plain loop over every rule for comparison, and start-up (loading and
compiling 1,000 rules, goal: under 1 s).

    .venv/bin/python bench/rules_scaling.py [--events N] [--rounds R] [--packets P]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sentinel.config import Config
from sentinel.engine import Engine, RuleSet, load_rule_files
from sentinel.events import Event

ROOT = Path(__file__).resolve().parent.parent
LISTS = {
    "tally_services": [22, 443, 5432],
    "admin_net": ["10.20.1.0/28"],
    "allowed_outbound": ["203.0.113.50:443", "10.20.0.2:53", "10.20.0.3:123"],
    "allowed_domains": ["kpu.go.id"],
}


def make_rules(n: int, rng: random.Random) -> dict[str, object]:
    """``n`` rules cycling through five realistic shapes, each a little different."""
    rules: list[dict[str, object]] = []
    lists = dict(LISTS)
    # two site-wide rules no index can narrow much, in both sets
    rules.append({"id": "inbound-unexpected-port", "title": "t", "severity": "high",
                  "kind": "net.connection",
                  "match": {"direction": "inbound", "dst_port": {"not_in": "tally_services"}}})
    rules.append({"id": "outbound-not-allowed", "title": "t", "severity": "high",
                  "kind": "net.connection",
                  "match": {"direction": "outbound",
                            "dst_ip+dst_port": {"not_in": "allowed_outbound"}}})
    for i in range(n - len(rules)):
        shape = i % 5
        port = 1024 + (i * 7919) % 60000
        rid = f"r{i}"
        if shape == 0:  # CIDR and a port
            match: dict[str, object] = {
                "src_ip": {"cidr": f"10.{i % 200}.{(i // 200) % 250}.0/24"},
                "dst_port": port}
        elif shape == 1:  # a named list of addresses
            name = f"hosts_{i}"
            lists[name] = [f"198.51.{i % 250}.{k}" for k in range(1, 6)]
            match = {"dst_ip": {"in": name}, "proto": "tcp"}
        elif shape == 2:  # a port list, not from the admin network
            match = {"dst_port": [port, port + 1, port + 2],
                     "src_ip": {"not_in": "admin_net"}}
        elif shape == 3:  # a DNS block list
            match = {"qname": [f"bad{i}-{k}.example.net" for k in range(3)]}
        else:  # a threshold on a port
            match = {"dst_port": port}
        rule: dict[str, object] = {"id": rid, "title": f"rule {i} {{src_ip}}",
                                   "severity": "medium",
                                   "kind": "net.dns" if shape == 3 else "net.connection",
                                   "match": match}
        if shape == 4:
            rule["threshold"] = {"at_least": 20, "window": "60s", "group_by": "src_ip"}
        rules.append(rule)
    return {"lists": lists, "rules": rules}


def make_events(count: int, rng: random.Random) -> list[Event]:
    """A site's day in miniature: mostly routine traffic, a few percent suspicious."""
    rule_ports = [1024 + (i * 7919) % 60000 for i in range(0, 1000, 3)]
    counting = [f"10.20.0.{k}" for k in range(20, 250)]
    outside = [f"198.18.{k // 250}.{k % 250 + 1}" for k in range(2000)]
    out: list[Event] = []
    t = 1_700_000_000.0
    for i in range(count):
        t += 0.001
        r = rng.random()
        odd = rng.random() < 0.05
        if r < 0.7:
            if odd:  # probes from outside at ports some rules watch
                src, dst, port, direction = (rng.choice(outside), "10.20.0.10",
                                             rng.choice(rule_ports), "inbound")
            elif rng.random() < 0.85:
                src, dst, port, direction = rng.choice(counting), "10.20.0.10", 443, "inbound"
            else:
                src, dst, port, direction = "10.20.0.10", "203.0.113.50", 443, "outbound"
            out.append(Event("net.connection", t, "bench", "network", {
                "proto": "tcp", "src_ip": src, "src_port": rng.randrange(1024, 65535),
                "dst_ip": dst, "dst_port": port, "direction": direction,
                "src_internal": src.startswith("10."), "dst_internal": dst.startswith("10."),
                "iface": "eth0", "tcp_flags": "S"}))
        elif r < 0.9:
            qname = f"bad{i % 997}-1.example.net" if odd else rng.choice(
                ["www.kpu.go.id", "api.kpu.go.id", "kpu.go.id"])
            out.append(Event("net.dns", t, "bench", "network", {
                "src_ip": "10.20.0.10", "dst_ip": "10.20.0.2", "direction": "outbound",
                "src_internal": True, "dst_internal": True, "qname": qname,
                "qtype": "A", "is_response": False, "rcode": "NOERROR"}))
        else:
            out.append(Event("net.flow", t, "bench", "network", {
                "proto": "tcp", "src_ip": rng.choice(counting), "src_port": 40000,
                "dst_ip": "10.20.0.10", "dst_port": 443, "direction": "inbound",
                "src_internal": True, "dst_internal": True, "bytes_out": 900,
                "bytes_in": 9000, "packets": 12, "duration": 0.4, "final": True}))
    return out


def load(doc: dict[str, object], folder: Path, name: str) -> RuleSet:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_rule_files([path])


def run(rules: RuleSet, events: list[Event]) -> tuple[float, int]:
    """Events/s through a fresh engine, and the alerts raised (CPU time: a shared
    machine's other load does not count). No storm control: this measures matching."""
    engine = Engine(rules, host="bench", storm=None)
    alerts = 0
    process = engine.process
    start = time.process_time()
    for ev in events:
        alerts += len(process(ev))
    elapsed = time.process_time() - start
    return len(events) / elapsed, alerts


def best_of(rounds: int, sets: dict[str, RuleSet], events: list[Event],
            ) -> dict[str, tuple[float, int]]:
    """Interleaved rounds, the best of each: other load on the machine hits both alike."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(rounds):
        for name, rules in sets.items():
            eps, alerts = run(rules, events)
            if name not in best or eps > best[name][0]:
                best[name] = (eps, alerts)
    return best


def example_config() -> Config:
    from sentinel.config_reader import load_config

    # the example config names its webhook secrets by environment variable; the
    # bench delivers nothing, so placeholders let the config validate
    for var in ("SENTINEL_BAWASLU_SECRET", "SENTINEL_MINISTRY_SECRET"):
        os.environ.setdefault(var, "whsec_" + "A" * 44)
    return load_config(ROOT / "config.example.yaml")


def default_pack() -> RuleSet | None:
    from sentinel.engine import load_rules

    rules = load_rules(example_config())
    return rules if len(rules) else None


def replay_events(packets: int, folder: Path) -> list[Event | float]:
    """bench/replay.py's traffic, decoded like replay does: events, and tick times."""
    sys.path.insert(0, str(ROOT / "bench"))
    from replay import generate  # the capture of bench/replay.py

    from sentinel.metrics import Metrics
    from sentinel.sources.net import iter_pcap_events

    pcap = folder / "mixed.pcap"
    generate(pcap, packets)
    out: list[Event | float] = []
    out.extend(iter_pcap_events([pcap], example_config(), Metrics(), on_tick=out.append))
    return out


def pack_times(n: int, folder: Path) -> tuple[list[Path], dict[str, tuple[object, ...]]]:
    """The pack's rule files with every rule copied ``n`` times, and the lists they use."""
    lists = dict(example_config().lists)
    files = []
    for src in sorted((ROOT / "rules").glob("*.yaml")):
        doc = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        rules = list(doc.get("rules", []))
        for k in range(1, n):
            for r in doc.get("rules", []):
                text = re.sub(r"\btally_server\b", f"tally_server_{k}", yaml.safe_dump(r))
                copy = yaml.safe_load(text)
                copy["id"] = f"{r['id']}-{k}"
                copy.pop("examples", None)  # written for the reference site's tally server
                rules.append(copy)
                lists[f"tally_server_{k}"] = (f"10.77.{k}.10",)
        path = folder / f"x{n}-{src.name}"
        path.write_text(yaml.safe_dump({**doc, "rules": rules}, sort_keys=False),
                        encoding="utf-8")
        files.append(path)
    return files, lists


def drive(engine: Engine, stream: list[Event | float]) -> tuple[float, int]:
    """Seconds to run ``stream`` (events and ticks, as replay does), and the alerts."""
    alerts = 0
    process, advance = engine.process, engine.advance
    start = time.process_time()
    for item in stream:
        alerts += len(advance(item) if isinstance(item, float) else process(item))
    return time.process_time() - start, alerts


def realistic(args: argparse.Namespace) -> None:
    schedules = example_config().schedules
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        stream = replay_events(args.packets, folder)
        events = sum(1 for x in stream if type(x) is not float)
        print(f"\nrealistic: the pack x N over bench/replay.py traffic: {args.packets:,}"
              f" packets -> {events:,} events (made in {time.perf_counter() - t0:.1f} s)")
        sets: dict[str, RuleSet] = {"no rules": RuleSet([])}
        for n in (1, 10, 31):
            files, lists = pack_times(n, folder)
            t0 = time.process_time()
            sets[f"pack x {n}"] = load_rule_files(files, lists, None, schedules)
            Engine(sets[f"pack x {n}"], host="bench")
            if n == 31:
                startup = time.process_time() - t0
    # as `sentinel replay` does: what start-up built is not walked by the collector again
    gc.collect()
    gc.freeze()
    best: dict[str, tuple[float, int]] = {}
    for _ in range(args.rounds):
        for name, rules in sets.items():
            got = drive(Engine(rules, host="bench"), stream)
            if name not in best or got[0] < best[name][0]:
                best[name] = got
    base = best["no rules"][0]
    share = {name: max(secs - base, 1e-9) / events for name, (secs, _) in best.items()}
    for name, (_, alerts) in best.items():
        if name != "no rules":
            print(f"{name:>10} ({len(sets[name]):4} rules): engine {share[name] * 1e6:7.2f}"
                  f" us/event  ({alerts} alerts)")
    plain, _ = drive(Engine(sets["pack x 31"], host="bench", indexed=False), stream)
    print(f"{'pack x 31':>10}, plain loop over every rule (the reference engine):"
          f" {max(plain - base, 1e-9) / events * 1e6:.2f} us/event")
    ratio = share["pack x 31"] / share["pack x 1"]
    verdict = "meets" if ratio <= 2.0 else "MISSES"
    print(f"per-event engine cost pack x 31 / pack: {ratio:.2f}x ({verdict} the 2x goal)")
    print(f"start-up, pack x 31 (992 rules) loaded, compiled, indexed: {startup:.2f} s CPU")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--packets", type=int, default=60_000,
                    help="packets of bench/replay.py traffic for the realistic case")
    args = ap.parse_args()
    rng = random.Random(7)
    events = make_events(args.events, rng)
    with tempfile.TemporaryDirectory() as tmp:
        small = load(make_rules(10, random.Random(1)), Path(tmp), "small")
        large = load(make_rules(1000, random.Random(1)), Path(tmp), "large")
        t0 = time.process_time()  # the file is written: this is the daemon's start-up work
        Engine(load_rule_files([Path(tmp) / "large.yaml"]), host="bench")
        startup = time.process_time() - t0
    run(small, events[:5000])  # warm caches (address parsing) the same way for both
    best = best_of(args.rounds, {"small": small, "large": large}, events)
    (eps_small, alerts_small), (eps_large, alerts_large) = best["small"], best["large"]
    ratio = eps_small / eps_large
    print(f"events: {len(events)}, best of {args.rounds} interleaved rounds")
    print(f"10 rules:    {eps_small:12,.0f} events/s  ({alerts_small} alerts)")
    print(f"1000 rules:  {eps_large:12,.0f} events/s  ({alerts_large} alerts)")
    verdict = "meets" if ratio <= 2.0 else "MISSES"
    print(f"per-event cost ratio 1000/10 rules: {ratio:.2f}x ({verdict} the 2x goal)")
    print(f"start-up, 1000 rules loaded, compiled, indexed: {startup:.2f} s CPU (goal: under 1 s)")
    pack = default_pack()
    if pack is None:
        print("default pack (rules/): none yet")
    else:
        eps_pack, alerts_pack = best_of(args.rounds, {"pack": pack}, events)["pack"]
        print(f"default pack ({len(pack)} rules): {eps_pack:12,.0f} events/s"
              f"  ({alerts_pack} alerts)")
    realistic(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
