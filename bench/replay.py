"""Replay speed: `sentinel replay` against scapy dissection and tshark, on one mixed pcap.

Generates a 100,000-packet capture (TCP handshakes, data and teardowns over
IPv4 and IPv6, DNS queries and answers, ARP, ICMP echo) and times, in this run:

* ``sentinel replay`` (a subprocess, so start-up counts) with the default rules
  in rules/ and the reference site's lists;
* scapy ``PcapReader`` dissecting the packets and reading the fields the events
  carry, in-process (a sample of ``--scapy-sample`` packets, scaled to the
  whole file: dissecting all 100,000 takes about ten seconds);
* ``tshark -r FILE -T fields`` printing the fields the events carry.

Prints packets/s for each and sentinel's ratio to both (goals: >= 50x scapy,
>= 4x tshark). Like is compared with like: against scapy, both rates are
in-process (sentinel's from its own summary, scapy's without its import);
against tshark, both are wall-clock for the whole command, start-up included.

    .venv/bin/python bench/replay.py [--packets N] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import re
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


def generate(path: Path, total: int, seed: int = 7) -> None:
    """Write ``total`` mixed Ethernet frames to a pcap at ``path``."""
    from scapy.all import ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Ether, IPv6, Raw

    rng = random.Random(seed)
    eth = Ether(src="02:00:00:00:00:10", dst="02:00:00:00:00:01")
    frames: list[bytes] = []
    payload = Raw(b"x" * 512)
    n_conn = 0
    while len(frames) < total:
        roll = rng.random()
        if roll < 0.75:  # a TCP connection: handshake, 20 data segments, teardown
            n_conn += 1
            v6 = n_conn % 5 == 0
            cli, srv = (("2001:db8::10", "2001:db8:1::7") if v6 else
                        (f"10.20.{rng.randrange(256)}.{rng.randrange(1, 255)}", "10.20.0.10"))
            ip = IPv6 if v6 else IP
            sport, dport = rng.randrange(1024, 65535), rng.choice((22, 443, 5432, 8080))
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
            name = rng.choice(("kpu.go.id", "www.kpu.go.id", "pemilu.example", "cdn.example"))
            qtype = rng.choice(("A", "AAAA", "TXT"))
            port = rng.randrange(1024, 65535)
            q = IP(src="10.20.0.10", dst="10.20.0.2") / UDP(sport=port, dport=53)
            r = IP(src="10.20.0.2", dst="10.20.0.10") / UDP(sport=53, dport=port)
            frames.append(bytes(eth / q / DNS(rd=1, qd=DNSQR(qname=name, qtype=qtype))))
            frames.append(bytes(eth / r / DNS(qr=1, qd=DNSQR(qname=name, qtype=qtype))))
        elif roll < 0.94:  # ARP request and reply
            host = f"10.20.0.{rng.randrange(2, 250)}"
            frames.append(bytes(Ether(src="02:00:00:00:00:10", dst="ff:ff:ff:ff:ff:ff")
                                / ARP(op=1, psrc="10.20.0.10", pdst=host)))
            frames.append(bytes(eth / ARP(op=2, psrc=host, hwsrc="02:00:00:00:00:33",
                                          pdst="10.20.0.10", hwdst="02:00:00:00:00:10")))
        else:  # ping and its echo, IPv4
            frames.append(bytes(eth / IP(src="10.20.0.10", dst="10.20.0.3") / ICMP(type=8)))
            frames.append(bytes(eth / IP(src="10.20.0.3", dst="10.20.0.10") / ICMP(type=0)))
    frames = frames[:total]
    t0 = 1_707_890_400.0  # during the reference site's counting window
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            ts = t0 + i * 0.0005
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)


def bench_config(tmp: Path) -> Path:
    """The reference site's config with the repo's rules and no outputs or FIM keys."""
    cfg = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    cfg.pop("outputs", None)
    cfg.pop("fim", None)
    cfg["rules"] = {"paths": [str(ROOT / "rules")]}
    cfg["state_dir"] = str(tmp)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def time_sentinel(pcap: Path, config: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "sentinel", "replay", "-c", str(config), str(pcap)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, done.stderr


def time_scapy(pcap: Path, sample: int) -> tuple[float, int]:
    """Dissect with scapy and read the fields sentinel's events carry (in-process)."""
    from scapy.layers.dns import DNS
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP
    from scapy.utils import PcapReader

    t0 = time.perf_counter()
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
    return time.perf_counter() - t0, n


def time_tshark(pcap: Path) -> float:
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--scapy-sample", type=int, default=5_000)
    ap.add_argument("--keep", type=Path, help="also write the generated pcap here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as d:
        tmp = Path(d)
        pcap = tmp / "mixed.pcap"
        t0 = time.perf_counter()
        generate(pcap, args.packets)
        print(f"generated {args.packets:,} packets ({pcap.stat().st_size / 2**20:.1f} MiB)"
              f" in {time.perf_counter() - t0:.1f} s")
        if args.keep:
            shutil.copy(pcap, args.keep)
        config = bench_config(tmp)
        rules = sorted((ROOT / "rules").glob("*.yaml"))
        print(f"rules: {len(rules)} file(s) in rules/")
        s_time, summary = time_sentinel(pcap, config)
        s_wall = args.packets / s_time
        steady = re.search(r"\(([\d,]+) packets/s\)", summary)
        s_steady = float(steady.group(1).replace(",", "")) if steady else float("nan")
        print(f"sentinel replay: {s_time:.2f} s wall = {s_wall:,.0f} packets/s with start-up;"
              f" {s_steady:,.0f} packets/s once started (its summary)")
        for line in summary.strip().splitlines():
            print(f"    {line}")
        c_time, n = time_scapy(pcap, args.scapy_sample)
        c_rate = n / c_time
        print(f"scapy PcapReader + fields: {c_rate:,.0f} packets/s in-process, import excluded"
              f" (a sample of {n:,} packets, scaled: {args.packets / c_rate:.0f} s for all)")
        if shutil.which("tshark"):
            t_time = time_tshark(pcap)
            t_rate = args.packets / t_time
            print(f"tshark -T fields: {t_time:.2f} s wall = {t_rate:,.0f} packets/s with start-up")
        else:
            t_rate = 0.0
            print("tshark: not installed (Debian package tshark)")
        print(f"ratio sentinel/scapy, both in-process:  {s_steady / c_rate:6.1f}x  (goal >= 50x;"
              f" with sentinel's start-up counted: {s_wall / c_rate:.1f}x)")
        if t_rate:
            print(f"ratio sentinel/tshark, both wall-clock: {s_wall / t_rate:6.1f}x  (goal >= 4x)")
        print(f"cpus: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
