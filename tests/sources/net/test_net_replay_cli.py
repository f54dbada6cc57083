"""`sentinel replay` end to end: alerts from rules on stdout, events, summary, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from netkit import write_pcap
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

T0 = 1_707_890_400.0

RULES = """
rules:
  - id: tally-synack-unoffered-port
    title: the tally server answered on a port it does not offer
    severity: high
    kind: net.tcp_synack
    match:
      src_ip: 10.20.0.10
      src_port: {not_in: [22, 443, 5432]}
  - id: gateway-arp-spoof
    title: someone else claims the gateway
    severity: critical
    kind: net.arp
    match:
      sender_ip: 10.20.0.1
      sender_mac: {not_in: ["02:00:00:00:00:01"]}
"""


def setup(tmp: Path) -> tuple[Path, Path]:
    (tmp / "rules.yaml").write_text(RULES)
    cfg = tmp / "config.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [10.20.0.10]}}\nstate_dir: {tmp}\n"
                   "network: {home_nets: [10.20.0.0/16]}\nrules: {paths: [rules.yaml]}\n")
    frames = [
        Ether() / IP(src="10.20.0.50", dst="10.20.0.10") / TCP(sport=40000, dport=8080,
                                                                flags="S"),
        Ether() / IP(src="10.20.0.10", dst="10.20.0.50") / TCP(sport=8080, dport=40000,
                                                                flags="SA"),
        Ether() / IP(src="10.20.0.50", dst="10.20.0.10") / TCP(sport=40001, dport=443,
                                                                flags="S"),
        Ether() / IP(src="10.20.0.10", dst="10.20.0.50") / TCP(sport=443, dport=40001,
                                                                flags="SA"),
        Ether() / ARP(op=2, psrc="10.20.0.1", hwsrc="02:00:00:00:00:66", pdst="10.20.0.10",
                      hwdst="02:00:00:00:00:10"),
        b"\x00" * 10,  # a runt shorter than an Ethernet header: counted, not fatal
    ]
    pcap = write_pcap(tmp / "c.pcap", 1, [(T0 + i, bytes(f)) for i, f in enumerate(frames)])
    return cfg, pcap


def sentinel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", "replay", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_replay_prints_alerts_from_the_rules_and_a_summary(tmp_path: Path) -> None:
    cfg, pcap = setup(tmp_path)
    done = sentinel("-c", str(cfg), str(pcap))
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(a["rule"], a["severity"], a["host"], a["source"]) for a in alerts] == [
        ("tally-synack-unoffered-port", "high", "tally-01", "network"),
        ("gateway-arp-spoof", "critical", "tally-01", "network")]
    first = alerts[0]["event"]
    assert (first["kind"], first["src_port"], first["dst_port"], first["direction"]) == (
        "net.tcp_synack", 8080, 40000, "outbound")
    assert alerts[0]["time"] == "2024-02-14T06:00:01.000Z"
    err = done.stderr
    assert err.startswith("replay: 6 packets from 1 file(s)")
    assert "alerts: gateway-arp-spoof 1, tally-synack-unoffered-port 1" in err
    assert "decode errors: 1;" in err
    assert "net.connection 2" in err and "net.tcp_synack 2" in err


def test_replay_events_prints_the_events_as_json_lines(tmp_path: Path) -> None:
    cfg, pcap = setup(tmp_path)
    done = sentinel("-c", str(cfg), "--events", str(pcap))
    assert done.returncode == 0, done.stderr
    kinds = [json.loads(line)["kind"] for line in done.stdout.splitlines()]
    assert sorted(kinds) == sorted(["net.connection", "net.tcp_synack", "net.established",
                                    "net.connection", "net.tcp_synack", "net.established",
                                    "net.arp", "net.flow", "net.flow"])


def test_replay_with_a_bad_config_exits_2_with_the_position(tmp_path: Path) -> None:
    _, pcap = setup(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("network:\n  snaplen: lots\n")
    done = sentinel("-c", str(bad), str(pcap))
    assert done.returncode == 2 and done.stdout == ""
    assert f"{bad}:2:" in done.stderr and "Traceback" not in done.stderr


def test_unreadable_and_non_capture_files_exit_2_without_output(tmp_path: Path) -> None:
    _, good = setup(tmp_path)
    bad = tmp_path / "notes.pcap"
    bad.write_text("these are not packets, just some notes long enough\n")
    for args in ([str(bad)], [str(tmp_path / "missing.pcap")], [str(good), str(bad)]):
        done = sentinel("--events", *args)
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr.startswith("sentinel replay: ") and "Traceback" not in done.stderr


def test_replay_deliver_journals_the_alerts(tmp_path: Path) -> None:
    cfg, pcap = setup(tmp_path)
    done = sentinel("-c", str(cfg), "--deliver", str(pcap))
    assert done.returncode == 0, done.stderr
    journal = tmp_path / "alerts.jsonl"
    records = [json.loads(line)["alert"] for line in journal.read_text().splitlines()]
    assert sorted(r["rule"] for r in records) == ["gateway-arp-spoof",
                                                  "tally-synack-unoffered-port"]
    printed = {json.loads(line)["id"] for line in done.stdout.splitlines()}
    assert {r["id"] for r in records} == printed


def test_without_c_and_without_the_default_config_replay_runs_with_an_empty_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sentinel.cli import main
    from sentinel.commands import replay

    _, pcap = setup(tmp_path)
    monkeypatch.setattr(replay, "DEFAULT_CONFIG", tmp_path / "absent.yaml")
    assert main(["replay", "--events", str(pcap)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["direction"] for e in events if "direction" in e} == {"transit"}  # no host known
    assert len(events) == 9  # two connections: SYN, SYN-ACK, established each; ARP; flows
