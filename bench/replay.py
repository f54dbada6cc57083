"""Replay speed: `sentinel replay` against dpkt, scapy and tshark, on two mixes.

Generates two 100,000-packet captures of the reference site and times each:

* the ``normal`` mix: the site's traffic (TCP handshakes, data and teardowns
  over IPv4 and IPv6, DNS queries and answers, ARP, ICMP echo; about 1% of it
  breaks a rule);
* the ``scan`` mix: an attack day, where most packets open a new connection or
  send a DNS query: SYN scans answered by resets (a scanner's retries included),
  stealth probes (FIN, NULL, Xmas, ACK), UDP probes, a DNS tunnel's unique
  names, SYNs in 8-byte fragments, and some of the normal traffic.

For each mix, in this run:

* ``sentinel replay`` (a subprocess, so start-up counts) with the default rules
  in rules/ and the reference site's lists;
* scapy ``PcapReader`` dissecting the packets and reading the fields the events
  carry, in-process (a sample of ``--scapy-sample`` packets, scaled to the
  whole file: dissecting all 100,000 takes about ten seconds);
* dpkt (a fast pure-Python parser) dissecting every packet and reading the
  same fields, in-process, import excluded: a baseline of dissection alone,
  with no flows, events or rules;
* ``tshark -r FILE -T fields`` printing the fields the events carry;
* a floor: the least any pure-Python reader does per packet (walk the records,
  one struct unpack of the headers and one small dict a packet, in-process),
  and the interpreter's own start-up (``python -c pass``): the most that any
  pure-Python command could reach against dpkt and tshark, measured on the
  same file in the same run, so a goal beyond it reads as such.

Prints packets/s for each and sentinel's ratio to all three (goals: >= 50x
scapy, >= 2x dpkt, >= 5x tshark on both mixes, with reassembly and the rules),
also without rules and for start-up alone, so the figures show
where the time goes. Times are CPU seconds, so other load on a shared machine
does not skew the ratios, and each is the least of three runs (scapy's, tshark's
and sentinel's alike). Like is compared with like: against scapy, both rates
exclude start-up (scapy is timed in-process after its import; sentinel's
start-up is a replay of a capture with no packets and no rules: interpreter,
imports and config, so the rule pack's loading counts as work); against
tshark, both are whole commands. sentinel runs with its bytecode cached (a
private cache dir, filled by an untimed first run), as an installed package
has it, so neither the timed runs nor the start-up pay for compiling it.

    .venv/bin/python bench/replay.py [--packets N] [--mix normal|scan|both] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TSHARK_FIELDS = ("frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                 "tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport", "udp.dstport",
                 "dns.qry.name", "dns.qry.type", "dns.flags.rcode", "arp.opcode",
                 "arp.src.proto_ipv4", "arp.src.hw_mac", "icmp.type", "icmp.code")


#: The reference site's allowed conversations: (client, server, port).
ALLOWED = (
    *((f"10.20.0.{h}", "10.20.0.10", 443) for h in range(20, 120)),  # counting net -> web
    *((f"10.20.1.{h}", "10.20.0.10", 22) for h in range(2, 14)),  # admin net -> SSH
    ("10.20.0.11", "10.20.0.10", 5432),  # the app server -> database
    ("10.20.0.10", "203.0.113.50", 443),  # tally -> central aggregation
)
#: About one connection in a hundred breaks a site rule (and one DNS name in fifty).
VIOLATIONS = (("10.20.5.7", "10.20.0.10", 5432), ("198.51.100.9", "10.20.0.10", 22),
              ("10.20.3.3", "10.20.0.10", 443))


def generate(path: Path, total: int, seed: int = 7) -> None:
    """Write ``total`` Ethernet frames of the reference site's traffic to a pcap at ``path``.

    TCP connections (handshake, 20 data segments, teardown; a fifth over IPv6),
    DNS queries and answers over UDP, ARP with the gateway, ICMP echo. Most of
    it is what the site allows; about 1% of connections and 2% of DNS names
    break a rule, so alerts are the exception they are in service.
    """
    from scapy.all import ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Ether, IPv6, Raw

    rng = random.Random(seed)
    eth = Ether(src="02:00:00:00:00:10", dst="02:00:00:00:00:01")
    frames: list[bytes] = []
    payload = Raw(b"x" * 512)
    n_conn = 0
    while len(frames) < total:
        roll = rng.random()
        if roll < 0.75:  # a TCP connection
            n_conn += 1
            ip = IPv6 if n_conn % 5 == 0 else IP
            if ip is IPv6:
                cli, srv, dport = "2001:db8::10", "2001:db8:1::7", 443
            else:
                cli, srv, dport = rng.choice(VIOLATIONS if rng.random() < 0.01 else ALLOWED)
            sport = rng.randrange(1024, 65535)
            c2s = eth / ip(src=cli, dst=srv)
            s2c = eth / ip(src=srv, dst=cli)
            frames.append(bytes(c2s / TCP(sport=sport, dport=dport, flags="S")))
            frames.append(bytes(s2c / TCP(sport=dport, dport=sport, flags="SA")))
            frames.append(bytes(c2s / TCP(sport=sport, dport=dport, flags="A")))
            data_c = bytes(c2s / TCP(sport=sport, dport=dport, flags="PA") / payload)
            data_s = bytes(s2c / TCP(sport=dport, dport=sport, flags="A"))
            for _ in range(10):
                frames.append(data_c)
                frames.append(data_s)
            frames.append(bytes(c2s / TCP(sport=sport, dport=dport, flags="FA")))
            frames.append(bytes(s2c / TCP(sport=dport, dport=sport, flags="FA")))
            frames.append(bytes(c2s / TCP(sport=sport, dport=dport, flags="A")))
        elif roll < 0.87:  # a DNS query and its answer
            name = (rng.choice(("pemilu.example", "cdn.example")) if rng.random() < 0.02 else
                    rng.choice(("kpu.go.id", "www.kpu.go.id", "api.kpu.go.id")))
            qtype = rng.choice(("A", "AAAA"))
            port = rng.randrange(1024, 65535)
            q = IP(src="10.20.0.10", dst="10.20.0.2") / UDP(sport=port, dport=53)
            r = IP(src="10.20.0.2", dst="10.20.0.10") / UDP(sport=53, dport=port)
            frames.append(bytes(eth / q / DNS(rd=1, qd=DNSQR(qname=name, qtype=qtype))))
            frames.append(bytes(eth / r / DNS(qr=1, qd=DNSQR(qname=name, qtype=qtype))))
        elif roll < 0.94:  # ARP: the tally server asks for a neighbour, which answers
            host, mac = rng.choice((("10.20.0.1", "02:00:00:00:00:01"),
                                    ("10.20.0.2", "02:00:00:00:00:02"),
                                    ("10.20.0.11", "02:00:00:00:00:11")))
            frames.append(bytes(Ether(src="02:00:00:00:00:10", dst="ff:ff:ff:ff:ff:ff")
                                / ARP(op=1, psrc="10.20.0.10", hwsrc="02:00:00:00:00:10",
                                      pdst=host)))
            frames.append(bytes(Ether(src=mac, dst="02:00:00:00:00:10")
                                / ARP(op=2, psrc=host, hwsrc=mac, pdst="10.20.0.10",
                                      hwdst="02:00:00:00:00:10")))
        else:  # ping the gateway and its echo
            frames.append(bytes(eth / IP(src="10.20.0.10", dst="10.20.0.1") / ICMP(type=8)))
            frames.append(bytes(eth / IP(src="10.20.0.1", dst="10.20.0.10") / ICMP(type=0)))
    _write(path, frames[:total])


def generate_scan(path: Path, total: int, seed: int = 11) -> None:
    """Write ``total`` frames of an attack day: most packets open a connection or ask DNS."""
    from scapy.all import DNS, DNSQR, IP, TCP, UDP, Ether, fragment

    rng = random.Random(seed)
    eth = Ether(src="02:00:00:00:06:66", dst="02:00:00:00:00:10")
    back = Ether(src="02:00:00:00:00:10", dst="02:00:00:00:06:66")
    frames: list[bytes] = []
    attackers = [f"10.20.0.{h}" for h in range(60, 68)] + ["198.51.100.23"]
    tally = "10.20.0.10"
    while len(frames) < total:
        roll = rng.random()
        src = rng.choice(attackers)
        sport = rng.randrange(1024, 65535)
        dport = rng.randrange(1, 65535)
        if roll < 0.45:  # a SYN scan: SYN, reset; a third of them re-sent (a scanner's retry)
            seq = rng.randrange(2**32)
            syn = bytes(eth / IP(src=src, dst=tally) / TCP(sport=sport, dport=dport, flags="S",
                                                          seq=seq))
            rst = bytes(back / IP(src=tally, dst=src) / TCP(sport=dport, dport=sport,
                                                           flags="RA", ack=seq + 1))
            frames += [syn, rst] * (2 if rng.random() < 0.33 else 1)
        elif roll < 0.60:  # stealth probes
            flags = rng.choice(("F", "", "FPU", "A", "FA"))
            frames.append(bytes(eth / IP(src=src, dst=tally) / TCP(sport=sport, dport=dport,
                                                                   flags=flags)))
            frames.append(bytes(back / IP(src=tally, dst=src) / TCP(sport=dport, dport=sport,
                                                                    flags="R")))
        elif roll < 0.66:  # UDP probes
            frames.append(bytes(eth / IP(src=src, dst=tally) / UDP(sport=sport, dport=dport)
                                / (b"\x00" * 8)))
        elif roll < 0.86:  # a DNS tunnel: a new name in every query, and its answer
            label = f"{rng.getrandbits(128):032x}"
            q = DNS(id=rng.randrange(65536), rd=1, qd=DNSQR(qname=f"{label}.t.exfil.example",
                                                            qtype=rng.choice(("TXT", "A"))))
            frames.append(bytes(back / IP(src=tally, dst="10.20.0.2")
                                / UDP(sport=sport, dport=53) / q))
            q.qr = 1
            frames.append(bytes(eth / IP(src="10.20.0.2", dst=tally) / UDP(sport=53, dport=sport)
                                / q))
        elif roll < 0.88:  # a SYN in 8-byte fragments
            syn = IP(src=src, dst=tally, id=rng.randrange(65536)) / TCP(
                sport=sport, dport=dport, flags="S")
            frames += [bytes(eth / f) for f in fragment(syn, fragsize=8)]
        else:  # ordinary sessions go on meanwhile
            cli = f"10.20.0.{rng.randrange(20, 60)}"
            c2s = eth / IP(src=cli, dst=tally)
            s2c = back / IP(src=tally, dst=cli)
            frames.append(bytes(c2s / TCP(sport=sport, dport=443, flags="S")))
            frames.append(bytes(s2c / TCP(sport=443, dport=sport, flags="SA")))
            for _ in range(3):
                frames.append(bytes(c2s / TCP(sport=sport, dport=443, flags="PA")
                                    / (b"x" * 300)))
                frames.append(bytes(s2c / TCP(sport=443, dport=sport, flags="A")))
            frames.append(bytes(c2s / TCP(sport=sport, dport=443, flags="FA")))
            frames.append(bytes(s2c / TCP(sport=443, dport=sport, flags="FA")))
    _write(path, frames[:total])


def _write(path: Path, frames: list[bytes]) -> None:
    t0 = 1_707_890_400.0  # during the reference site's counting window
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            ts = t0 + i * 0.0005
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)


def bench_config(tmp: Path, with_rules: bool = True) -> Path:
    """The reference site's config (its lists), with the repo's rules or none; no outputs."""
    cfg = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    cfg.pop("outputs", None)
    cfg.pop("fim", None)
    cfg["rules"] = {"paths": [str(ROOT / "rules")] if with_rules else []}
    cfg["state_dir"] = str(tmp)
    path = tmp / ("config.yaml" if with_rules else "config-no-rules.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


#: Every timed command (sentinel's, tshark's) and the scapy sample run this many times;
#: the least CPU counts, since other load on a shared machine only ever adds to it.
REPEAT = 3


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` REPEAT times; (wall, CPU seconds, stderr) of the run with the least CPU."""
    return min((_run_once(cmd, env) for _ in range(REPEAT)), key=lambda r: r[1])


def _run_once(cmd: list[str], env: dict[str, str] | None) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr


def time_scapy(pcap: Path, sample: int) -> tuple[float, int]:
    """Dissect with scapy and read the fields sentinel's events carry (in-process)."""
    from scapy.layers.dns import DNS
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP
    from scapy.utils import PcapReader

    t0 = time.process_time()
    n = 0
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            net = pkt.getlayer(IP) or pkt.getlayer(IPv6)
            if net is not None:
                _ = (net.src, net.dst)
            if (l4 := pkt.getlayer(TCP)) is not None:
                _ = (l4.sport, l4.dport, str(l4.flags))
            elif (l4 := pkt.getlayer(UDP)) is not None:
                _ = (l4.sport, l4.dport)
            if (dns := pkt.getlayer(DNS)) is not None and dns.qd:
                _ = (dns.qd[0].qname, dns.qd[0].qtype, dns.qr, dns.rcode)
            if (arp := pkt.getlayer(ARP)) is not None:
                _ = (arp.op, arp.psrc, arp.hwsrc, arp.pdst, arp.hwdst)
            if (icmp := pkt.getlayer(ICMP)) is not None:
                _ = (icmp.type, icmp.code)
            n += 1
            if n >= sample:
                break
    return time.process_time() - t0, n


def time_dpkt(pcap: Path) -> tuple[float, int]:
    """Dissect every packet with dpkt and read the fields sentinel's events carry."""
    import socket

    import dpkt

    inet_ntop = socket.inet_ntop
    t0 = time.process_time()
    n = 0
    with pcap.open("rb") as fh:
        for _ts, raw in dpkt.pcap.Reader(fh):
            n += 1
            eth = dpkt.ethernet.Ethernet(raw)
            net = eth.data
            if isinstance(net, dpkt.ip.IP):
                _ = (inet_ntop(socket.AF_INET, net.src), inet_ntop(socket.AF_INET, net.dst))
            elif isinstance(net, dpkt.ip6.IP6):
                _ = (inet_ntop(socket.AF_INET6, net.src), inet_ntop(socket.AF_INET6, net.dst))
            elif isinstance(net, dpkt.arp.ARP):
                _ = (net.op, net.spa, net.sha, net.tpa, net.tha)
                continue
            else:
                continue
            l4 = net.data
            if isinstance(l4, dpkt.tcp.TCP):
                _ = (l4.sport, l4.dport, l4.flags)
            elif isinstance(l4, dpkt.udp.UDP):
                _ = (l4.sport, l4.dport)
                if 53 in (l4.sport, l4.dport):
                    try:
                        dns = dpkt.dns.DNS(l4.data)
                        if dns.qd:
                            _ = (dns.qd[0].name, dns.qd[0].type, dns.qr, dns.rcode)
                    except (dpkt.UnpackError, IndexError):
                        pass
            elif isinstance(l4, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6):
                _ = (l4.type, l4.code)
    return time.process_time() - t0, n


#: The floor's one unpack per packet: Ethernet addresses and type, IPv4 length, TTL,
#: protocol, addresses and ports (right for IPv4 without options; enough to time).
_FLOOR_HEADER = struct.Struct("!12sH2xH4xBB2x4s4sHH")
_FLOOR_RECORD = struct.Struct("<IIII")


def time_floor(pcap: Path) -> tuple[float, int]:
    """The least any pure-Python reader does per packet, timed in-process.

    Walk the capture's records, unpack each packet's headers with one struct call
    and build one small dict of its fields: no IPv6, fragments, DNS, flows, events
    or rules. What sentinel does per packet can cost no less than this.
    """
    t0 = time.process_time()
    buf = pcap.read_bytes()
    record, header = _FLOOR_RECORD.unpack_from, _FLOOR_HEADER.unpack_from
    off, end, n = 24, len(buf), 0
    kept = []
    while off + 16 <= end:
        secs, usecs, caplen, _ = record(buf, off)
        off += 16
        if caplen >= _FLOOR_HEADER.size:
            _macs, _etype, _length, _ttl, proto, src, dst, sport, dport = header(buf, off)
            kept.append({"time": secs + usecs / 1e6, "proto": proto, "src": src, "dst": dst,
                         "sport": sport, "dport": dport})
        off += caplen
        n += 1
    return time.process_time() - t0, n


def tshark_cmd(pcap: Path) -> list[str]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    return cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--scapy-sample", type=int, default=5_000)
    ap.add_argument("--mix", choices=("normal", "scan", "both"), default="both")
    ap.add_argument("--keep", type=Path, help="also write the generated pcap here")
    ap.add_argument("--pcap", type=Path,
                    help="time this capture (one written by --keep) instead of generating one")
    args = ap.parse_args()
    mixes = ("normal", "scan") if args.mix == "both" and not args.pcap else (args.mix,)
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as d:
        tmp = Path(d)
        rules = sorted((ROOT / "rules").glob("*.yaml"))
        print(f"rules: {len(rules)} file(s) in rules/; times are CPU seconds of each process"
              " (wall in brackets), so other load on the machine does not skew the ratios")
        for mix in mixes:
            print(f"== {mix} mix ==")
            bench_mix(tmp, mix, args)
        print(f"cpus: {os.cpu_count()}")
    return 0


def bench_mix(tmp: Path, mix: str, args: argparse.Namespace) -> None:
    pcap = tmp / f"{mix}.pcap"
    t0 = time.perf_counter()
    if args.pcap:
        shutil.copy(args.pcap, pcap)
    else:
        (generate if mix == "normal" else generate_scan)(pcap, args.packets)
    print(f"{'reused' if args.pcap else 'generated'} {args.packets:,} packets"
          f" ({pcap.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
    if args.keep:
        shutil.copy(pcap, args.keep.with_name(f"{args.keep.stem}-{mix}{args.keep.suffix}"))
    me = [sys.executable, "-m", "sentinel"]
    n = args.packets
    # an installed package has its bytecode (pip compiles it); a checkout run with
    # PYTHONDONTWRITEBYTECODE would compile sentinel's modules in every timed run
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    empty = tmp / "empty.pcap"
    with pcap.open("rb") as fh:
        empty.write_bytes(fh.read(24))  # the file header, no packets
    no_rules = str(bench_config(tmp, False))
    _run_once([*me, "replay", "-c", str(bench_config(tmp)), str(empty)], env)  # fills the cache
    up_wall, up_cpu, _ = run_timed([*me, "replay", "-c", no_rules, str(empty)], env)
    ur_wall, ur_cpu, _ = run_timed([*me, "replay", "-c", str(bench_config(tmp)), str(empty)], env)
    v_wall, v_cpu, _ = run_timed([*me, "--version"], env)
    s_wall, s_cpu, summary = run_timed([*me, "replay", "-c", str(bench_config(tmp)),
                                        str(pcap)], env)
    b_wall, b_cpu, _ = run_timed([*me, "replay", "-c", no_rules, str(pcap)], env)
    print(f"sentinel replay, default rules: {s_cpu:.2f} s ({s_wall:.2f}) ="
          f" {n / s_cpu:,.0f} packets/s")
    for line in summary.strip().splitlines()[1:3]:
        print(f"    {line[:150]}")
    print(f"sentinel replay, no rules:      {b_cpu:.2f} s ({b_wall:.2f}) ="
          f" {n / b_cpu:,.0f} packets/s")
    print(f"sentinel start-up: replay of no packets without rules {up_cpu:.2f} s"
          f" ({up_wall:.2f}), with the rules {ur_cpu:.2f} s ({ur_wall:.2f});"
          f" --version {v_cpu:.2f} s ({v_wall:.2f})")
    steady = n / max(s_cpu - up_cpu, 1e-9)
    decoder = n / max(b_cpu - up_cpu, 1e-9)
    print(f"  once started: {steady:,.0f} packets/s with the rules,"
          f" {decoder:,.0f} packets/s decoder, flows and events alone")
    c_time, c_n = min(time_scapy(pcap, args.scapy_sample) for _ in range(REPEAT))
    c_rate = c_n / c_time
    print(f"scapy PcapReader + fields: {c_rate:,.0f} packets/s in-process, import excluded"
          f" (a sample of {c_n:,} packets; {n / c_rate:.0f} s for all, scaled)")
    d_time, d_n = min(time_dpkt(pcap) for _ in range(REPEAT))
    d_rate = d_n / d_time
    print(f"dpkt dissection + fields: {d_rate:,.0f} packets/s in-process, import excluded")
    f_time, f_n = min(time_floor(pcap) for _ in range(REPEAT))
    f_rate = f_n / f_time
    _, py_cpu, _ = run_timed([sys.executable, "-c", "pass"])
    print(f"pure-Python floor (one header unpack and one dict a packet, nothing else):"
          f" {f_rate:,.0f} packets/s in-process; the interpreter starts in {py_cpu:.2f} s")
    if shutil.which("tshark"):
        t_wall, t_cpu, _ = run_timed(tshark_cmd(pcap))
        t_rate = n / t_cpu
        print(f"tshark -T fields: {t_cpu:.2f} s ({t_wall:.2f}) = {t_rate:,.0f} packets/s")
    else:
        t_rate = 0.0
        print("tshark: not installed (Debian package tshark)")
    print(f"ratio sentinel/scapy, both once started:  {steady / c_rate:6.1f}x with the rules,"
          f" {decoder / c_rate:.1f}x without  (goal >= 50x)")
    print(f"ratio sentinel/dpkt, both once started:   {steady / d_rate:6.2f}x with the rules,"
          f" {decoder / d_rate:.2f}x without  (goal >= 2x)")
    print(f"ratio floor/dpkt, once started:          {f_rate / d_rate:6.2f}x  (the most any"
          " pure-Python reader reaches)")
    if t_rate:
        print(f"ratio sentinel/tshark, whole commands:    {n / s_cpu / t_rate:6.1f}x with the"
              f" rules, {n / b_cpu / t_rate:.1f}x without  (goal >= 5x)")
        floor_cmd = py_cpu + f_time * n / f_n
        print(f"ratio floor/tshark, whole command:        {n / floor_cmd / t_rate:6.1f}x"
              f"  (interpreter start-up plus the floor: the most any pure-Python command"
              f" reaches; at 5x, {t_cpu / 5:.2f} s is the whole budget)")


if __name__ == "__main__":
    sys.exit(main())
