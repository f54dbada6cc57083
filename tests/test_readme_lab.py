"""The README lab's offline step, run as written with stand-ins for the daemon: the
write happens only after the old daemon has stopped (it must not see it live), and
the clean-up line stops every job the lab started."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import REPO

BINARY = "/tmp/lab/opt/tally/bin/tally-server"


def lab_lines() -> tuple[str, str, str]:
    """The README's offline-step line, restart line and clean-up command."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lab = text[text.index("## Try it in five minutes"):]
    offline = next(line for line in lab.splitlines() if line.startswith("kill %2"))
    restart = next(line for line in lab.splitlines()
                   if "sentinel run" in line and "is reported at start" in line)
    cleanup = re.search(r"Clean up with `([^`]*)`", lab)
    assert cleanup is not None
    return offline, restart, cleanup.group(1)


def test_offline_change_is_written_after_the_daemon_stopped(tmp_path: Path) -> None:
    offline, restart, cleanup = lab_lines()
    binary = tmp_path / "tally-server"
    seen = tmp_path / "seen"
    # job 1 stands in for the receiver; job 2 for sentinel, which takes a moment to
    # stop on SIGTERM and records whether the offline change was already there
    daemon = (f"bash -c 'trap \"sleep 0.3; [ -e {binary} ] && echo live > {seen}"
              f" || echo offline > {seen}; exit 0\" TERM; while :; do sleep 0.05; done'")
    script = "\n".join([
        "set -m",
        "sleep 30 &",
        f"{daemon} &",
        "sleep 0.3",
        offline.split("#")[0].replace(BINARY, str(binary)),
        "sleep 30 &  # " + restart.split("&")[0],  # the restarted daemon, as a stand-in
        cleanup.split(";")[0],
        "sleep 0.2",
        "echo running: $(jobs -rp | wc -l)",
    ])
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          check=False)
    assert seen.read_text().strip() == "offline", done.stdout + done.stderr
    assert binary.read_text() == "tally build 3\n"
    assert "running: 0" in done.stdout, done.stdout + done.stderr
