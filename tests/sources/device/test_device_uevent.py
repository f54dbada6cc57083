"""Kernel device events: one the kernel sends for a real device, and recorded ones.

The live test asks the kernel to send an ``add`` event again for an existing loop
device (``echo add > /sys/block/loopN/uevent``, what ``udevadm trigger`` does);
the kernel marks it with the UUID written, so the test finds its own event among
any others. Nothing about the device changes.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from sentinel.config import Config
from sentinel.config_reader import load_config
from sentinel.events import KIND_FIELDS, Event
from sentinel.metrics import Metrics
from sentinel.sources.device import DeviceSource
from sentinel.sources.device.uevent import DeviceFacts, parse_uevent
from tests.support import wait_for


def _config(tmp: Path, extra: str = "") -> Config:
    path = tmp / "config.yaml"
    path.write_text(f"host: {{name: tally-01, addresses: [10.20.0.10]}}\nstate_dir: {tmp}\n"
                    f"devices: {{enabled: true{extra}}}\n")
    return load_config(path)


def _loop_device() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root to ask the kernel for a device event")
    found = sorted(Path("/sys/block").glob("loop*"))
    if not found:
        pytest.skip("no loop device on this machine (module loop not loaded)")
    return found[0]


def test_a_kernel_add_event_for_a_block_device_becomes_device_added(tmp_path: Path) -> None:
    dev = _loop_device()
    src = DeviceSource(_config(tmp_path), Metrics())
    got: list[Event] = []
    lock = threading.Lock()

    def emit(ev: Event) -> None:
        with lock:
            got.append(ev)

    seen_raw: list[bytes] = []
    handle = src.handle

    def spy(data: bytes, ts: float) -> None:
        handle(data, ts)
        seen_raw.append(data)  # after handling: once seen here, its event is emitted

    src.handle = spy  # type: ignore[method-assign]
    src.start(emit)
    try:
        # a lookalike sent from userspace to the kernel's group (root can) is not read
        forged = RECORDED_LOOP_ADD.replace(b"loop0", b"forged9")
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15) as s:
            s.bind((0, 0))
            s.sendto(forged, (0, 1))
        mark = str(uuid.uuid4())
        (dev / "uevent").write_text(f"add {mark}")
        wait_for(lambda: any(mark.encode() in r for r in seen_raw), 10.0, "the kernel's event")
        with lock:
            mine = [e for e in got if e.fields.get("devname") == dev.name]
        assert mine, "the event was read but not emitted"
        ev = mine[-1]
        assert ev.kind == "device.added" and ev.source == "device" and ev.host == "tally-01"
        f = ev.fields
        assert set(f) == set(KIND_FIELDS["device.added"])
        assert (f["subsystem"], f["devtype"], f["action"]) == ("block", "disk", "add")
        assert f["devpath"] == f"/devices/virtual/block/{dev.name}"
        # a loop device is neither removable nor on a bus: what sysfs says, not a guess
        assert (f["removable"], f["bus"]) == (False, "virtual")
        assert src.components() == {"device:uevent": True, "device:mounts": True}
        # sent before the kernel's event on the same socket, so already read and dropped
        assert not any(b"forged9" in r for r in seen_raw)
        assert not [e for e in got if e.fields.get("devname") == "forged9"]
    finally:
        src.stop()
    assert not src.alive()


def test_subsystems_not_asked_for_are_dropped(tmp_path: Path) -> None:
    src = DeviceSource(_config(tmp_path, ", subsystems: [usb]"), Metrics())
    got: list[Event] = []
    src._emit = got.append
    src.handle(RECORDED_LOOP_ADD, 0.0)
    assert got == []


# The loop device's resent add as this machine's kernel sent it. No USB device can be
# attached here, so the stick's add and remove are written in that same form with the
# DEVPATH a USB mass-storage disk has, and the sysfs files read for it are a directory
# shaped like sysfs (_fake_sys): a stand-in, said here.
RECORDED_LOOP_ADD = (b"add@/devices/virtual/block/loop0\0ACTION=add\0"
                     b"DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0SYNTH_UUID=0\0"
                     b"MAJOR=7\0MINOR=0\0DEVNAME=loop0\0DEVTYPE=disk\0DISKSEQ=1\0SEQNUM=10328\0")
_USB_PATH = (b"/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/"
             b"6:0:0:0/block/sdb")
RECORDED_USB_ADD = (b"add@" + _USB_PATH + b"\0ACTION=add\0DEVPATH=" + _USB_PATH +
                    b"\0SUBSYSTEM=block\0MAJOR=8\0MINOR=16\0DEVNAME=sdb\0DEVTYPE=disk\0"
                    b"DISKSEQ=9\0SEQNUM=4521\0")
RECORDED_USB_REMOVE = RECORDED_USB_ADD.replace(b"add", b"remove").replace(b"4521", b"4533")


def _fake_sys(root: Path, vendor: bytes) -> None:
    """A sysfs tree shaped as the stick's: the USB device's descriptors above the disk."""
    usbdev = root / "devices/pci0000:00/0000:00:14.0/usb1/1-1"
    disk = root / _USB_PATH.decode().lstrip("/")
    disk.mkdir(parents=True)
    (disk / "removable").write_text("1\n")
    (usbdev / "idVendor").write_text("0781\n")
    (usbdev / "manufacturer").write_bytes(vendor)
    (usbdev / "product").write_text("Cruzer Blade\n")
    (usbdev / "serial").write_text("4C530001231106117322\n")


def test_a_usb_stick_is_removable_storage_with_its_claimed_names_and_they_stay_for_remove(
        tmp_path: Path) -> None:
    _fake_sys(tmp_path, b"SanDisk\n")
    facts = DeviceFacts(tmp_path)
    add = parse_uevent(RECORDED_USB_ADD)
    assert add is not None
    f = facts.fields(add)
    assert (f["removable"], f["bus"], f["devname"]) == (True, "usb", "sdb")
    assert (f["vendor"], f["model"], f["serial"]) == ("SanDisk", "Cruzer Blade",
                                                     "4C530001231106117322")
    rm = parse_uevent(RECORDED_USB_REMOVE)
    assert rm is not None
    # at remove the sysfs directory is gone; the names seen at add are kept
    g = facts.fields(rm)
    assert (g["action"], g["vendor"], g["serial"], g["removable"]) == (
        "remove", "SanDisk", "4C530001231106117322", True)


def test_hostile_usb_descriptors_are_escaped_and_cut(tmp_path: Path) -> None:
    _fake_sys(tmp_path, b"\xff\x1b[2J" + b"A" * 1000)
    add = parse_uevent(RECORDED_USB_ADD)
    assert add is not None
    vendor = DeviceFacts(tmp_path).fields(add)["vendor"]
    assert vendor.startswith("\\xff\x1b[2J") and len(vendor) == 128


def test_udev_rebroadcasts_and_garbage_are_not_events() -> None:
    assert parse_uevent(b"libudev\0\xfe\xed\xca\xfe" + RECORDED_LOOP_ADD) is None
    assert parse_uevent(b"no at sign\0ACTION=add\0") is None
    assert parse_uevent(b"add@/x\0SUBSYSTEM=block\0") is None
