"""The device source: the kernel's device events from a NETLINK_KOBJECT_UEVENT socket.

Pure Python: a netlink socket of family 15 bound to the kernel's multicast group
1, no udev daemon or binding needed (a tally server may run without udevd). Only
messages whose sender is the kernel (netlink port 0) are read: root on the host
could send lookalike messages from userspace to the group otherwise.

Components: the socket (``device:uevent``) and the mount table watch
(``device:mounts``, see :class:`MountEvents`). A receive buffer
overflow (``ENOBUFS``: the kernel sent faster than the source read) means events
were lost; it is logged and counted in ``sentinel_device_events_lost``, and the
source keeps reading.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel import logs
from sentinel.config import Config
from sentinel.events import KIND_FIELDS, Event
from sentinel.metrics import Metrics
from sentinel.pipeline import Emit
from sentinel.selfwatch.mounts import Mount, MountWatch
from sentinel.sources.device.uevent import (
    ACTIONS,
    PSEUDO,
    DeviceFacts,
    block_removable,
    parse_uevent,
)

_log = logs.get("device")

NETLINK_KOBJECT_UEVENT = 15
KERNEL_GROUP = 1
RCVBUF = 4 * 2**20


class MountEvents:
    """Calls ``send(kind, fields)`` for every mount that appears or goes
    (``mount.added`` / ``mount.removed``; pseudo file systems left out).

    The table is watched by :class:`sentinel.selfwatch.mounts.MountWatch`, the same
    poll on /proc/self/mountinfo the self-protection uses for mounts over watched
    paths; this adds an event per mount, with ``removable`` when the mounted device
    is removable storage, so a rule sees a stick being mounted, not only attached.
    Only sentinel's mount namespace is seen (see that module).
    """

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


class DeviceSource:
    name = "device"

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.host = config.host.name
        self.metrics = metrics
        self.subsystems = frozenset(config.devices.subsystems)
        self.facts = DeviceFacts()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._emit: Emit | None = None
        self._up = False
        self.mounts = MountEvents(self._send) if config.devices.mounts else None

    def start(self, emit: Emit) -> None:
        self._emit = emit
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_KOBJECT_UEVENT)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, KERNEL_GROUP))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._up = True
        _log.info("device_events_reading")
        self._thread = threading.Thread(target=self._loop, name="sentinel-device",
                                        daemon=True)
        self._thread.start()
        if self.mounts is not None:
            self.mounts.start()

    def stop(self) -> None:
        self._stop.set()
        if self.mounts is not None:
            self.mounts.stop()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def alive(self) -> bool:
        threads = self._thread is not None and self._thread.is_alive()
        return threads and (self.mounts is None or self.mounts.alive())

    def components(self) -> dict[str, bool]:
        out = {"device:uevent": self._up and self._thread is not None
               and self._thread.is_alive()}
        if self.mounts is not None:
            out["device:mounts"] = self.mounts.alive()
        return out

    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.5)
            if not ready:
                continue
            try:
                data, addr = sock.recvfrom(65536)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.metrics.device_events_lost.inc()
                    _log.error("device_events_lost", detail="receive buffer overflow")
                    continue
                self._up = False
                _log.error("device_events_blind", detail=str(exc))
                raise
            if addr[0] != 0:
                continue  # not from the kernel
            self.handle(data, time.time())

    def handle(self, data: bytes, ts: float) -> None:
        env = parse_uevent(data)
        if env is None or env["ACTION"] not in ACTIONS:
            return
        if env.get("SUBSYSTEM") not in self.subsystems:
            return
        self._send(ACTIONS[env["ACTION"]], self.facts.fields(env), ts)

    def _send(self, kind: str, fields: dict[str, Any], ts: float | None = None) -> None:
        assert self._emit is not None
        full = {k: fields.get(k) for k in KIND_FIELDS[kind]}
        self._emit(Event(kind, time.time() if ts is None else ts, self.host, "device", full))
        self.metrics.events.labels("device", kind).inc()


def build_device_source(config: Config, metrics: Metrics) -> DeviceSource | None:
    return DeviceSource(config, metrics) if config.devices.enabled else None
