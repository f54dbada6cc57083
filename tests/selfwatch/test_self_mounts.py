"""A mount over a watched path is an alert and a rescan at once, not at the hourly rescan."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.selfwatch.mounts import Mount, affected, parse_mountinfo
from tests.selfwatch.selfkit import Site
from tests.sinks.receiver import Receiver
from tests.support import wait_for


def test_mountinfo_parsing_unescapes_hostile_paths() -> None:
    text = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            "99 22 8:1 /evil\\040dir /opt/tally\\040bin/x rw shared:1 - ext4 /dev/sda1 rw\n"
            "garbage line\n")
    table = parse_mountinfo(text)
    assert table[99] == Mount(99, "/opt/tally bin/x", "ext4", "/dev/sda1", "/evil dir")
    assert set(table) == {22, 99}


@pytest.mark.parametrize(("point", "want"), [
    ("/opt/tally/bin/tally", ["/opt/tally/bin/tally"]),   # on a watched file
    ("/opt", ["/opt/tally/bin", "/opt/tally/bin/tally"]),  # above: hides it
    ("/opt/tally/bin/sub", ["/opt/tally/bin/sub"]),        # inside a recursive watch
    ("/opt/tallyx", []),                                   # beside, a prefix only
    ("/etc/passwd.d", []),                                 # beside a file entry
])
def test_which_mounts_cover_watched_paths(point: str, want: list[str]) -> None:
    watched = [("/opt/tally/bin", True), ("/opt/tally/bin/tally", False),
               ("/etc/passwd", True)]
    assert affected(Mount(1, point, "ext4", "/dev/x", "/"), watched) == want


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to bind-mount over a watched file")
    with Receiver() as rx:
        s = Site(tmp_path, rx)
        try:
            yield s
        finally:
            s.kill()


def test_a_bind_mount_over_a_watched_file_is_an_alert_and_rescanned_at_once(
        site: Site, tmp_path: Path) -> None:
    """rescan_interval is 1h: the tampered binary is reported only because the mount
    table changed (no inotify event comes from a mount)."""
    site.start()
    evil = tmp_path / "evil-tally"
    evil.write_bytes(b"tally that counts wrong\n")
    target = site.opt / "tally"
    subprocess.run(["mount", "--bind", str(evil), str(target)], check=True,
                   capture_output=True)
    try:
        alert = site.wait_alert("sentinel-mount-over-watched")
        assert alert["severity"] == "critical"
        assert alert["event"]["mount_point"] == str(target)
        assert alert["event"]["paths"] == [str(target)]
        tampered = site.wait_alert("tally-binary-tampered")
        assert tampered["event"]["path"] == str(target)
        assert "content" in tampered["event"]["changed"]
        wait_for(lambda: site.delivered("sentinel-mount-over-watched"), what="the webhook")
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)
    # the real file is visible again: rescanned, reported back, no second mount alert
    wait_for(lambda: len(site.alerts("tally-binary-tampered")) >= 2, what="the rescan")
    assert len(site.alerts("sentinel-mount-over-watched")) == 1


def test_a_write_through_a_hard_link_outside_the_tree_is_found_in_seconds(
        site: Site, tmp_path: Path) -> None:
    """The watched binary has a second name outside the tree; writing through it makes no
    inotify event in the watched folder, yet it is reported well before the 1h rescan."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.link(site.opt / "tally", outside / "t")
    site.start()
    with (outside / "t").open("r+b") as fh:  # the same inode, rewritten in place
        fh.write(b"TALLY")
    tampered = site.wait_alert("tally-binary-tampered", timeout=30)
    assert tampered["event"]["path"] == str(site.opt / "tally")
    assert "content" in tampered["event"]["changed"]
