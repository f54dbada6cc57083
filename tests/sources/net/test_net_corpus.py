"""Robustness: every capture of the shared corpus replays with exit 0 and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / ".." / "shared" / "corpus" / "suricata-verify" / "pcaps"
BATCH = 320  # files per process: start-up once per batch keeps the whole run short


def corpus() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared capture corpus is not at {CORPUS}")
    files = sorted(CORPUS.glob("*.pcap*"))
    assert len(files) > 1000
    return files


def site_config(tmp: Path) -> Path:
    """The reference site with the default rule pack, without outputs (nothing delivered)."""
    cfg = yaml.safe_load((REPO / "config.example.yaml").read_text())
    for key in ("outputs", "fim"):
        cfg.pop(key, None)
    cfg["rules"] = {"paths": [str(REPO / "rules")]}
    cfg["state_dir"] = str(tmp)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("events", [False, True], ids=["alerts", "events"])
def test_every_corpus_capture_replays_cleanly(events: bool, tmp_path: Path) -> None:
    files = corpus()
    config = site_config(tmp_path)
    packets = 0
    for i in range(0, len(files), BATCH):
        batch = [str(f) for f in files[i : i + BATCH]]
        cmd = [sys.executable, "-m", "sentinel", "replay", "-c", str(config), *batch]
        if events:
            cmd.append("--events")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Traceback" not in done.stderr + done.stdout
        assert "decode_failed" not in done.stderr  # only malformed packets, no decoder bug
        # the summary, after any log line (captures of many sites: a storm of new
        # stations is logged when it starts)
        summary = [line for line in done.stderr.splitlines() if line.startswith("replay: ")]
        assert len(summary) == 1, done.stderr[-2000:]
        packets += int(summary[0].split()[1])
    assert packets > 10_000

