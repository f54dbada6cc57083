"""Kernel limits: inotify queue overflow and the watch limit, both real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sentinel.sources.fim import watcher
from tests.sources.fim.fimkit import Site, wait_for

QUEUE_KNOB = Path("/proc/sys/fs/inotify/max_queued_events")
HERE = Path(__file__).resolve().parent


def test_queue_overflow_rescans_and_loses_nothing(site: Site,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst overflows a 16-event inotify queue; every file is still reported once.

    Real overflow, not simulated: the kernel sizes an inotify instance's queue
    from max_queued_events when the instance is created, so the test lowers the
    knob to 16 only around sentinel's own inotify_init and restores it at once
    (other processes' instances keep their size). The burst comes from another
    process, as fast as it can create files.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to lower fs.inotify.max_queued_events")
    real_create = watcher._InotifyFD._create_inotify_fd

    def small_queue(cls: type) -> int:
        old = QUEUE_KNOB.read_text()
        QUEUE_KNOB.write_text("16\n")
        try:
            return real_create()
        finally:
            QUEUE_KNOB.write_text(old)

    monkeypatch.setattr(watcher._InotifyFD, "_create_inotify_fd", classmethod(small_queue))
    site.start()
    burst = site.w / "burst"
    burst.mkdir()
    site.barrier()
    site.events.clear()
    made: list[str] = []
    for attempt in range(5):  # bounded: overflow is near certain on the first
        names = [str(burst / f"a{attempt}-{i:04d}") for i in range(3000)]
        subprocess.run([sys.executable, "-c",
                        "import sys\nfor p in sys.argv[1:]:\n    open(p, 'wb').close()",
                        *names], check=True)
        made += names
        wait_for(lambda: site.source is not None and site.source.idle(), what="burst handled")
        if site.metric("sentinel_fim_rescans_total", reason="overflow") >= 1:
            break
    assert site.metric("sentinel_fim_rescans_total", reason="overflow") >= 1
    events = site.settled()
    assert {e.kind for e in events} == {"fim.created"}
    counts = Counter(e.fields["path"] for e in events)
    assert set(counts) == set(made)
    assert max(counts.values()) == 1  # none reported twice
    assert any(e.fields["offline"] for e in events)  # the rescan found what was lost


def run_helper(tmp_path: Path, mode: str) -> dict[str, Any]:
    """watch_limit_helper.py in a user namespace of the test's own; its JSON report."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    probe = subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user namespace: {probe.stderr.decode().strip()}")
    proc = subprocess.run(
        ["unshare", "-U", "-r", sys.executable, str(HERE / "watch_limit_helper.py"),
         str(tmp_path), mode],
        capture_output=True, text=True, timeout=120, cwd=HERE.parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_watch_limit_rescans_the_unwatched_directory(tmp_path: Path) -> None:
    """ENOSPC from a real, lowered watch limit, in a user namespace of the test's own."""
    out = run_helper(tmp_path, "6")
    assert out["early"] == []  # first run
    assert out["startup_limit_rescans"] >= 1  # the tree has more directories than watches
    late = str(tmp_path / "w" / "late")
    # the directory whose watch failed: found by its rescan, then polled; once each
    assert [e[:2] for e in out["events"]] == [["fim.created", late],
                                              ["fim.created", late + "/payload"],
                                              ["fim.modified", late + "/payload"]]
    assert all(offline for _, _, offline in out["events"])
    assert out["limit_rescans"] > out["startup_limit_rescans"]
    assert out["alive"] is True


def test_without_any_inotify_instance_rescans_still_report(tmp_path: Path) -> None:
    """EMFILE from inotify_init (instance limit 0 in a user namespace of the test's own)."""
    out = run_helper(tmp_path, "no-instances")
    assert out["early"] == [] and out["limit_rescans"] == 1
    assert out["events"] == [["fim.modified", str(tmp_path / "w" / "readme"), True]]
    assert out["alive"] is True


def test_periodic_rescan_finds_a_change_inotify_cannot_see(site: Site) -> None:
    """A write through a hard link outside the tree raises no event on the watched
    directory; the rescan every fim.rescan_interval finds it."""
    outside = site.root / "outside-link"
    os.link(site.w / "conf" / "app.conf", outside)
    site.start(site.config(fim_extra=("rescan_interval: 1s",)))
    with outside.open("ab") as fh:
        fh.write(b"threshold = 0\n")
    wait_for(site.changes, what="the periodic rescan's event")
    events = site.settled()
    assert [(e.kind, e.fields["path"], e.fields["offline"]) for e in events] == [
        ("fim.modified", str(site.w / "conf" / "app.conf"), True)]
    assert site.metric("sentinel_fim_rescans_total", reason="periodic") >= 1
