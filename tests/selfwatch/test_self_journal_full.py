"""A journal that cannot be written is counted (for SentinelJournalWriteFailing), on a
really full file system."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.selfwatch.selfkit import Site
from tests.sinks.receiver import Receiver
from tests.support import wait_for


def _metric(site: Site, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{site.port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return -1.0


def _fill(folder: Path) -> None:
    with (folder / "filler").open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        for _ in range(10_000):  # bounded: the tmpfs is 256 KiB
            fh.write(b"\0" * 4096)


def test_journal_write_failures_are_counted_on_a_full_disk(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                   check=True, capture_output=True)
    try:
        with Receiver() as rx:
            site = Site(tmp_path, rx, "")
            site.config.write_text(site.config.read_text().replace(
                "outputs:\n", f"outputs:\n  journal: {{path: {small / 'alerts.jsonl'}}}\n"))
            try:
                site.start()
                assert _metric(site, "sentinel_journal_write_failures_total") == 0.0
                _fill(small)
                (site.opt / "tally").write_bytes(b"tally v2\n")
                wait_for(lambda: _metric(site, "sentinel_journal_write_failures_total") >= 1,
                         what="the journal write failure counted")
                assert _metric(site, "sentinel_journal_records_total") == 0.0
                (small / "filler").unlink()
                (site.opt / "tally").write_bytes(b"tally v3\n")
                wait_for(lambda: _metric(site, "sentinel_journal_records_total") >= 1,
                         what="journaling again once there is room")
                assert b"tally-binary-tampered" in (small / "alerts.jsonl").read_bytes()
                site.stop()
            finally:
                site.kill()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False, capture_output=True)
