"""`sentinel replay` ends like the daemon stops: folded counts add up (issue #14.7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.sources.net.netkit import write_pcap

T0 = 1_707_890_400.0

RULES = """
rules:
  - id: ssh-in
    title: SSH from {src_ip}
    severity: high
    kind: net.connection
    match: {proto: tcp, dst_port: 22}
    suppress: {key: src_ip, period: 10m}
"""


def _replay(tmp: Path, times: list[float]) -> list[dict[str, object]]:
    (tmp / "rules.yaml").write_text(RULES)
    cfg = tmp / "config.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [10.20.0.10]}}\nstate_dir: {tmp}\n"
                   "network: {home_nets: [10.20.0.0/16]}\nrules: {paths: [rules.yaml]}\n")
    # each attempt a new connection: its own source port and sequence number
    frames = [(t, bytes(Ether() / IP(src="198.51.100.7", dst="10.20.0.10")
                        / TCP(sport=30000 + i, dport=22, flags="S", seq=1000 + i)))
              for i, t in enumerate(times)]
    pcap = write_pcap(tmp / "ssh.pcap", 1, frames)
    done = subprocess.run([sys.executable, "-m", "sentinel", "replay", str(pcap), "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def accounted(alerts: list[dict[str, object]]) -> int:
    """The events the alerts stand for: a summary's count is its whole period's total
    (rules/README.md, Suppression), so a first alert counts only when no summary follows."""
    summarized = {a["first_alert"] for a in alerts if a.get("summary")}
    return sum(int(str(a["count"])) for a in alerts
               if a.get("summary") or a["id"] not in summarized)


def test_eleven_ssh_attempts_give_alerts_whose_counts_sum_to_eleven(tmp_path: Path) -> None:
    alerts = _replay(tmp_path, [T0 + 5 * i for i in range(11)])
    assert accounted(alerts) == 11, alerts
    assert [a.get("summary", False) for a in alerts] == [False, True], \
        "the first attempt at once, then the summary of the period, closed at the end"


@pytest.mark.parametrize("n", [487])
def test_attempts_over_several_suppression_periods_all_counted(tmp_path: Path, n: int) -> None:
    # spread over about 48 minutes: several 10-minute periods end inside the capture,
    # the last one is still open when the capture ends
    alerts = _replay(tmp_path, [T0 + 6 * i for i in range(n)])
    assert accounted(alerts) == n
    assert sum(1 for a in alerts if a.get("summary")) == 5, "four periods ended, one flushed"
