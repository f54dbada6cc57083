"""Helpers for the network source tests: namespaces, capture files, configs."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sentinel.config import Config
from sentinel.config_reader import load_config
from tests.support import wait_for

__all__ = ["wait_for"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def needs_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made: not root, or no `ip`."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs the ip command (Debian package iproute2)")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread inside namespace ``ns``; sockets it makes stay there.

    Threads that ``fn`` starts inherit the namespace.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{ns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class VethPair:
    """Two namespaces, ``a`` (watched) and ``b``, joined by a veth pair with static neighbours."""

    A4, B4 = "10.99.0.1", "10.99.0.2"
    A6, B6 = "fd00:99::1", "fd00:99::2"
    AMAC, BMAC = "02:00:00:99:00:01", "02:00:00:99:00:02"

    def __init__(self, tag: str = "") -> None:
        pid = os.getpid()
        self.a = f"snt-{pid}{tag}-a"
        self.b = f"snt-{pid}{tag}-b"
        self.va = f"sa{pid % 10**8}{tag}"[:15]
        self.vb = f"sb{pid % 10**8}{tag}"[:15]

    def create(self) -> None:
        for ns in (self.a, self.b):
            ip("netns", "add", ns)
        ip("link", "add", self.va, "netns", self.a, "address", self.AMAC, "type", "veth",
           "peer", "name", self.vb, "netns", self.b, "address", self.BMAC)
        for ns, dev, a4, a6, peer4, peer6, peer_mac in (
            (self.a, self.va, self.A4, self.A6, self.B4, self.B6, self.BMAC),
            (self.b, self.vb, self.B4, self.B6, self.A4, self.A6, self.AMAC),
        ):
            for key in ("all", "default"):
                # no router solicitations or DAD: keep the wire to what the test sends
                sysctl(ns, f"net.ipv6.conf.{key}.router_solicitations", "0")
                sysctl(ns, f"net.ipv6.conf.{key}.accept_dad", "0")
            ip("-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
            ip("-n", ns, "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
            # static neighbours: no ARP or ND traffic that the test did not send
            ip("-n", ns, "neigh", "replace", peer4, "lladdr", peer_mac, "dev", dev,
               "nud", "permanent")
            ip("-n", ns, "neigh", "replace", peer6, "lladdr", peer_mac, "dev", dev,
               "nud", "permanent")

    def destroy(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def sysctl(ns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
                   check=True, capture_output=True)


@contextmanager
def veth_pair(tag: str = "") -> Iterator[VethPair]:
    pair = VethPair(tag)
    pair.destroy()
    pair.create()
    try:
        yield pair
    finally:
        pair.destroy()


def send_frames(ns: str, dev: str, frames: Iterable[bytes]) -> None:
    """Send raw Ethernet frames out of ``dev`` in namespace ``ns``."""
    def go() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((dev, 0))
            for f in frames:
                s.send(f)

    in_netns(ns, go)




# -- capture files -------------------------------------------------------------


def write_pcap(path: Path, linktype: int, frames: Iterable[tuple[float, bytes]],
               snaplen: int = 65535, *, nanos: bool = False, big: bool = False) -> Path:
    """A classic pcap with the given frames (time, bytes); ``snaplen`` cuts them."""
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, frame in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nanos else 1e6))
        cut = frame[:snaplen]
        out.append(struct.pack(e + "IIII", sec, frac, len(cut), len(frame)) + cut)
    path.write_bytes(b"".join(out))
    return path


def site_config(tmp: Path, **network: Any) -> Config:
    """The reference site's host and home networks, loaded through the real config loader."""
    lines = ["host:", "  name: tally-01", "  addresses: [10.20.0.10, '2001:db8::10']",
             f"state_dir: {tmp}", "network:", "  home_nets: [10.20.0.0/16, '2001:db8::/48']"]
    for key, value in network.items():
        lines.append(f"  {key}: {value}")
    path = tmp / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path)
