"""Mount events from the mount table: a real tmpfs mounted and unmounted by the test."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from sentinel.config_reader import load_config
from sentinel.events import KIND_FIELDS, Event
from sentinel.metrics import Metrics
from sentinel.sources.device import DeviceSource
from sentinel.sources.device.uevent import block_removable
from tests.support import wait_for


def test_a_mount_and_its_unmount_become_mount_events(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [10.0.0.1]}}\nstate_dir: {tmp_path}\n"
                   "devices: {subsystems: [usb]}\n")
    src = DeviceSource(load_config(cfg), Metrics())
    got: list[Event] = []
    lock = threading.Lock()

    def emit(ev: Event) -> None:
        with lock:
            got.append(ev)

    point = tmp_path / "stick"
    point.mkdir()

    def mine(kind: str) -> list[Event]:
        with lock:
            return [e for e in got if e.kind == kind
                    and e.fields["mount_point"] == str(point)]

    src.start(emit)
    mounted = False
    try:
        assert src.components() == {"device:uevent": True, "device:mounts": True}
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "sentinel-test", str(point)],
                       check=True)
        mounted = True
        ev = wait_for(lambda: mine("mount.added"), 10.0, "the mount event")[0]
        assert set(ev.fields) == set(KIND_FIELDS["mount.added"])
        assert (ev.fields["fs_type"], ev.fields["mount_source"], ev.fields["removable"]) == (
            "tmpfs", "sentinel-test", None)
        assert ev.source == "device"
        subprocess.run(["umount", str(point)], check=True)
        mounted = False
        wait_for(lambda: mine("mount.removed"), 10.0, "the unmount event")
    finally:
        if mounted:
            subprocess.run(["umount", str(point)], check=False)
        src.stop()


def test_removable_is_read_from_the_disk_of_a_partition(tmp_path: Path) -> None:
    """A stand-in sysfs (no stick can be attached here): sdb removable, sda not."""
    blk = tmp_path / "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block"
    for disk, flag in (("sda", "0"), ("sdb", "1")):
        (blk / disk / f"{disk}1").mkdir(parents=True)
        (blk / disk / "removable").write_text(flag + "\n")
        (tmp_path / "class/block").mkdir(parents=True, exist_ok=True)
        for name, target in ((disk, blk / disk), (f"{disk}1", blk / disk / f"{disk}1")):
            (tmp_path / "class/block" / name).symlink_to(target)
    assert block_removable("/dev/sdb1", tmp_path) is True
    assert block_removable("/dev/sda1", tmp_path) is False
    assert block_removable("/dev/nosuch", tmp_path) is None
    assert block_removable("tmpfs", tmp_path) is None
