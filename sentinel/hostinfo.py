"""The host's own addresses, read from the kernel (default for ``host.addresses``)."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

_SIOCGIFADDR = 0x8915


def _ipv4_of(name: str) -> ipaddress.IPv4Address | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return ipaddress.IPv4Address(raw[20:24])


def local_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Primary IPv4 address of every interface and every IPv6 address, loopback excluded."""
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for _, name in socket.if_nameindex():
        a4 = _ipv4_of(name)
        if a4 is not None and not a4.is_loopback:
            out.append(a4)
    try:
        # /proc/self/net, not /proc/net: the unit's ProcSubset=pid hides the latter
        lines = Path("/proc/self/net/if_inet6").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hexaddr = line.split()[0]
        a6 = ipaddress.IPv6Address(bytes.fromhex(hexaddr))
        if not a6.is_loopback:
            out.append(a6)
    return out
