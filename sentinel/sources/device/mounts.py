"""Mount events: the mount table's changes as ``mount.added`` / ``mount.removed``.

The table is watched by :class:`sentinel.selfwatch.mounts.MountWatch` (the same
poll on /proc/self/mountinfo the self-protection uses for mounts over watched
paths); this adds an event per mount, with ``removable`` when the mounted device
is removable storage, so a rule sees a stick being mounted, not only attached.
Only sentinel's mount namespace is seen (see that module).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel.selfwatch.mounts import Mount, MountWatch
from sentinel.sources.device.uevent import sysfs_text

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


class MountEvents:
    """Calls ``send(kind, fields)`` for every mount that appears or goes."""

    def __init__(self, send: Callable[[str, dict[str, Any]], None],
                 path: str = "/proc/self/mountinfo", sys_root: Path = Path("/sys")) -> None:
        self.send = send
        self.sys_root = sys_root
        self.watch = MountWatch(self._changed, path)

    def start(self) -> None:
        self.watch.start()

    def stop(self) -> None:
        self.watch.stop()

    def alive(self) -> bool:
        return self.watch.alive()

    def _fields(self, m: Mount) -> dict[str, Any]:
        return {"mount_point": m.point, "fs_type": m.fs_type, "mount_source": m.source,
                "mount_root": m.root, "removable": block_removable(m.source, self.sys_root)}

    def _changed(self, new: list[Mount], gone: list[Mount]) -> None:
        for m in gone:
            if m.fs_type not in PSEUDO:
                self.send("mount.removed", self._fields(m))
        for m in new:
            if m.fs_type not in PSEUDO:
                self.send("mount.added", self._fields(m))
