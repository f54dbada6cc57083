"""Kernel device events (uevents) into event fields, with what sysfs tells about the device.

A kernel uevent is ``ACTION@DEVPATH`` then ``KEY=VALUE`` strings, each ended by a
NUL. The kernel's own message carries no vendor or model: those are read from
sysfs while the device is there (at ``add``) and remembered for its ``remove``.

Hostile input: vendor, model and serial of a USB device are strings the device
itself reports, so a stick can claim to be anything and carry any bytes. They are
decoded with their bad bytes escaped, cut to :data:`MAX_TEXT` characters, and
shown as claims (rules must not trust them to allow a device).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

MAX_TEXT = 128
#: Devices remembered between their add and remove (oldest forgotten first).
MAX_KNOWN = 4096

ACTIONS = {"add": "device.added", "remove": "device.removed"}


def parse_uevent(data: bytes) -> dict[str, str] | None:
    """The ``KEY=VALUE`` pairs of one kernel uevent, None when it is not one.

    udev's own re-broadcasts start with ``libudev`` and a binary header; they are
    not read (sentinel listens to the kernel's group only).
    """
    if data.startswith(b"libudev"):
        return None
    parts = data.split(b"\0")
    head = parts[0].decode("utf-8", "backslashreplace")
    if "@" not in head:
        return None
    env: dict[str, str] = {}
    for p in parts[1:]:
        k, sep, v = p.partition(b"=")
        if sep and k:
            env[k.decode("ascii", "backslashreplace")] = v.decode("utf-8", "backslashreplace")
    if "ACTION" not in env or "DEVPATH" not in env:
        return None
    return env


def sysfs_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TEXT * 4)
    except OSError:
        return None
    text = raw.decode("utf-8", "backslashreplace").strip()
    return text[:MAX_TEXT] or None


class DeviceFacts:
    """Reads sysfs for a device's facts and remembers them until it is removed."""

    def __init__(self, sys_root: Path = Path("/sys")) -> None:
        self.sys_root = sys_root
        self._known: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def fields(self, env: dict[str, str]) -> dict[str, Any]:
        devpath = env["DEVPATH"]
        action = env["ACTION"]
        base: dict[str, Any] = {
            "action": action,
            "subsystem": env.get("SUBSYSTEM"),
            "devtype": env.get("DEVTYPE"),
            "devname": env.get("DEVNAME"),
            "devpath": devpath,
        }
        if action == "remove":
            facts = self._known.pop(devpath, None) or self._guess(devpath)
        else:
            facts = self._read(devpath, env)
            self._known[devpath] = facts
            self._known.move_to_end(devpath)
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        return {**base, **facts}

    def _guess(self, devpath: str) -> dict[str, Any]:
        """Facts of a device removed before sentinel saw it added: only its path says."""
        usb = "/usb" in devpath
        return {"bus": "usb" if usb else None, "removable": usb or None,
                "vendor": None, "model": None, "serial": None}

    def _read(self, devpath: str, env: dict[str, str]) -> dict[str, Any]:
        # DEVPATH comes from the kernel (the sender is checked) and is relative to /sys;
        # ".." in it would still stay a read of sysfs attributes, never a write
        node = self.sys_root / devpath.lstrip("/")
        try:
            real = os.path.realpath(node)
        except OSError:
            real = str(node)
        usb = "/usb" in real or "/usb" in devpath
        disk = node.parent if env.get("DEVTYPE") == "partition" else node
        flag = sysfs_text(disk / "removable")
        removable: bool | None = (flag == "1") if flag in ("0", "1") else None
        if usb:
            removable = True  # a USB stick or disk can leave; some report removable=0
        vendor = sysfs_text(disk / "device" / "vendor")
        model = sysfs_text(disk / "device" / "model")
        serial = None
        if usb:
            # the USB device's own descriptors, on the nearest ancestor that has them
            p = Path(real)
            for _ in range(12):
                if (p / "idVendor").exists():
                    vendor = sysfs_text(p / "manufacturer") or sysfs_text(p / "idVendor")
                    model = sysfs_text(p / "product") or sysfs_text(p / "idProduct")
                    serial = sysfs_text(p / "serial")
                    break
                if p.parent == p:
                    break
                p = p.parent
        bus = "usb" if usb else ("virtual" if "/virtual/" in devpath else None)
        return {"removable": removable, "bus": bus, "vendor": vendor, "model": model,
                "serial": serial}


#: pseudo file systems: no device behind them, and containers mount them by the dozen
PSEUDO = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "nsfs",
                    "debugfs", "tracefs", "securityfs", "pstore", "bpf", "configfs",
                    "fusectl", "hugetlbfs", "binfmt_misc", "autofs", "efivarfs", "devtmpfs"})


def block_removable(source: str, sys_root: Path = Path("/sys")) -> bool | None:
    """Whether the block device ``source`` (``/dev/sdb1``) is removable; None when not a
    block device or not known."""
    if not source.startswith("/dev/"):
        return None
    name = os.path.basename(os.path.realpath(source)) if sys_root == Path("/sys") \
        else os.path.basename(source)
    node = sys_root / "class" / "block" / name
    try:
        real = os.path.realpath(node)
    except OSError:
        return None
    if not os.path.exists(real):
        return None
    if "/usb" in real:
        return True
    flag = sysfs_text(Path(real) / "removable") or sysfs_text(Path(real).parent / "removable")
    return flag == "1" if flag in ("0", "1") else None
