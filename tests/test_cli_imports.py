"""The CLI loads only what a command needs, and replay still logs a failure on stderr."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

#: Heavy modules that neither the CLI's start nor a plain replay needs.
HEAVY = ("structlog", "cryptography", "requests", "sqlite3", "bcrypt", "watchdog", "scapy")
#: What a plain replay needs, but registering the commands' parsers does not.
REPLAY_ONLY = ("logging", "prometheus_client", "sentinel.engine", "sentinel.sources.net")

# an Ethernet/IPv4/TCP SYN from 10.20.5.7 to the database port of 10.20.0.10
_SYN = bytes.fromhex(
    "020000000001020000000010080045000028000100004006"
    "0000" "0a140507" "0a14000a" "9c401538000000000000000050020200" "00000000"
)
_RULES = """
rules:
  - id: db-from-outside
    title: database connection from outside the app server
    severity: high
    kind: net.connection
    match:
      dst_port: 5432
      src_ip: {not_in: [10.20.0.11]}
"""


def _setup(tmp: Path) -> tuple[Path, Path]:
    (tmp / "rules.yaml").write_text(_RULES)
    cfg = tmp / "config.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [10.20.0.10]}}\nstate_dir: {tmp}\n"
                   "network: {home_nets: [10.20.0.0/16]}\nrules: {paths: [rules.yaml]}\n")
    pcap = tmp / "syn.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack("<IIII", 1_707_890_400, 0, len(_SYN), len(_SYN)) + _SYN)
    return cfg, pcap


def _run(code: str, *argv: str,
         watch: tuple[str, ...] = HEAVY) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter after ``code``; print which of ``watch`` it loaded."""
    script = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: print('LOADED', json.dumps([m for m in {watch!r}"
        " if m in sys.modules]), file=sys.stderr))\n"
        f"{code}\n"
        "from sentinel.cli import main\n"
        f"sys.exit(main({list(argv)!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def _loaded(stderr: str) -> list[str]:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("LOADED "))
    found: list[str] = json.loads(line.removeprefix("LOADED "))
    return found


def test_every_command_registers_without_heavy_imports() -> None:
    """`sentinel --help` builds every command's parser but imports none of their machinery."""
    done = _run("", "--help", watch=HEAVY + REPLAY_ONLY)
    assert done.returncode == 0, done.stderr
    for name in ("run", "check", "journal", "replay", "attest", "report", "baseline"):
        assert name in done.stdout
    assert _loaded(done.stderr) == []


def test_replay_with_rules_loads_no_heavy_module(tmp_path: Path) -> None:
    """A replay that raises an alert needs neither structlog nor the delivery/FIM stacks."""
    cfg, pcap = _setup(tmp_path)
    done = _run("", "replay", "-c", str(cfg), str(pcap))
    assert done.returncode == 0, done.stderr
    assert [json.loads(ln)["rule"] for ln in done.stdout.splitlines()] == ["db-from-outside"]
    assert _loaded(done.stderr) == []


def test_replay_logs_a_decoder_failure_on_stderr_as_json(tmp_path: Path) -> None:
    """Logging is set up at the first record: a decoder bug is one JSON line on stderr."""
    cfg, pcap = _setup(tmp_path)
    inject = ("from sentinel.sources.net import decode\n"
              "def boom(self, *a):\n"
              "    raise RuntimeError('injected decoder bug')\n"
              "decode.Decoder.ether = boom\n")
    done = _run(inject, "replay", "-c", str(cfg), str(pcap))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # no event was decoded, and no log line went to stdout
    records = [json.loads(ln) for ln in done.stderr.splitlines() if ln.startswith("{")]
    assert [r["event"] for r in records] == ["decode_failed"]
    assert records[0]["level"] == "error"
    assert records[0]["component"] == "net.decode"
    assert "injected decoder bug" in records[0]["exception"]
    assert "decode errors: 1;" in done.stderr


def test_replay_logs_a_failing_rule_on_stderr_as_json(tmp_path: Path) -> None:
    """A rule that raises is logged once, on stderr; replay goes on to the end."""
    cfg, pcap = _setup(tmp_path)
    inject = ("from sentinel.engine import engine\n"
              "def boom(self, *a):\n"
              "    raise KeyError('injected rule bug')\n"
              "engine.Engine._alert = boom\n")
    done = _run(inject, "replay", "-c", str(cfg), str(pcap))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    records = [json.loads(ln) for ln in done.stderr.splitlines() if ln.startswith("{")]
    assert [(r["event"], r["rule"]) for r in records] == [("rule_failed", "db-from-outside")]
    assert "injected rule bug" in records[0]["exception"]
