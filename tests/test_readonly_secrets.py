"""Only what sends needs a webhook secret (issue #14.3).

Read-only commands (baseline init/verify, journal verify, report, delivery status,
attest keygen/write, replay without --deliver) run without the secrets; run,
replay --deliver and delivery retry still refuse a config whose secret is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.conftest import EXAMPLE_SECRETS, REPO
from tests.sources.net.netkit import write_pcap

SENTINEL = [sys.executable, "-m", "sentinel"]


SSH_RULE = """\
rules:
  - id: ssh-in
    title: "SSH from {src_ip}"
    severity: high
    kind: net.connection
    match: {dst_port: 22}
    examples:
      match: [{kind: net.connection, proto: tcp, src_ip: 10.9.9.9, dst_port: 22}]
      no_match: [{kind: net.connection, proto: tcp, src_ip: 10.9.9.9, dst_port: 80}]
"""


def _config(tmp: Path, secret_file: Path) -> Path:
    (tmp / "watched").mkdir()
    (tmp / "watched" / "a.conf").write_text("a = 1\n")
    (tmp / "rules").mkdir()
    (tmp / "rules" / "ssh.yaml").write_text(SSH_RULE)
    cfg = tmp / "config.yaml"
    cfg.write_text(
        "host:\n  name: tally-01\n  addresses: [10.20.0.10]\n"
        f"state_dir: {tmp / 'state'}\n"
        "network:\n  home_nets: [10.20.0.0/16]\n"
        f"fim:\n  paths: [{{path: {tmp / 'watched'}, tags: [tally-config]}}]\n"
        f"rules:\n  paths: [{tmp / 'rules'}]\n"
        "outputs:\n  metrics: {enabled: false}\n  webhooks:\n"
        "    - name: soc\n      url: http://127.0.0.1:9/hook\n"
        "      secret_env: SENTINEL_BAWASLU_SECRET\n"
        "    - name: am\n      format: alertmanager\n      url: http://127.0.0.1:9\n"
        f"      secret_file: {secret_file}\n"
    )
    (tmp / "state").mkdir()
    return cfg


def _env(with_secrets: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_SECRETS}
    if with_secrets:
        env.update(EXAMPLE_SECRETS)
    return env


def _sentinel(*args: str | Path, secrets: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENTINEL, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=_env(secrets))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(config, pcap, secret file): a journal with alerts made by a delivering replay."""
    tmp = tmp_path_factory.mktemp("ro")
    secret = tmp / "am.secret"
    secret.write_text("am-bearer-token\n")
    cfg = _config(tmp, secret)
    # an SSH connection from outside the admin network raises an alert
    syn = Ether() / IP(src="198.51.100.7", dst="10.20.0.10") / TCP(sport=40000, dport=22,
                                                                  flags="S")
    pcap = write_pcap(tmp / "ssh.pcap", 1, [(1707890700.0, bytes(syn))])
    done = _sentinel("replay", pcap, "-c", cfg, "--deliver", "--drain-timeout", "0.5",
                     secrets=True)
    assert done.returncode == 0, done.stderr
    assert (tmp / "state" / "alerts.jsonl").exists(), "the delivering replay wrote no journal"
    # from here on the secrets are gone: neither the variable nor the file
    secret.unlink()
    yield cfg, pcap, tmp


READ_ONLY: list[tuple[str, list[str]]] = [
    ("baseline init", ["baseline", "init"]),
    ("baseline verify", ["baseline", "verify"]),
    ("journal verify", ["journal", "verify"]),
    ("delivery status", ["delivery", "status"]),
    ("attest keygen", ["attest", "keygen"]),
    ("attest (write one)", ["attest"]),
    ("report", ["report", "-o", "{tmp}/report.html"]),
    ("replay without --deliver", ["replay", "{pcap}"]),
]


@pytest.mark.parametrize(("name", "argv"), READ_ONLY, ids=[n for n, _ in READ_ONLY])
def test_read_only_command_runs_without_webhook_secrets(
    site: tuple[Path, Path, Path], name: str, argv: list[str]
) -> None:
    cfg, pcap, tmp = site
    args = [a.format(tmp=tmp, pcap=pcap) for a in argv]
    done = _sentinel(*args, "-c", cfg)
    assert done.returncode == 0, f"{name}: exit {done.returncode}: {done.stderr}"
    assert "secret" not in done.stderr, done.stderr


SENDING: list[tuple[str, list[str]]] = [
    ("run", ["run"]),
    ("replay --deliver", ["replay", "{pcap}", "--deliver", "--drain-timeout", "0.5"]),
    ("delivery retry", ["delivery", "retry"]),
]


@pytest.mark.parametrize(("name", "argv"), SENDING, ids=[n for n, _ in SENDING])
def test_sending_command_still_refuses_missing_secret(
    site: tuple[Path, Path, Path], name: str, argv: list[str]
) -> None:
    cfg, pcap, tmp = site
    args = [a.format(tmp=tmp, pcap=pcap) for a in argv]
    done = _sentinel(*args, "-c", cfg)
    assert done.returncode == 2, f"{name}: exit {done.returncode}: {done.stderr}"
    assert "secret_env: environment variable SENTINEL_BAWASLU_SECRET is not set" in done.stderr
    assert "secret_file: cannot read" in done.stderr
    assert "Traceback" not in done.stderr
