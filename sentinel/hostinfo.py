"""The host's own addresses, read from the kernel.

``local_addresses`` is the default for ``host.addresses``. ``with_own_addresses``
adds to a configured ``host.addresses`` (and to the rule list ``tally_server``,
which names this same server) every address the kernel has given the capture
interfaces that the config does not list: above all the IPv6 addresses a Linux
server gets without anyone writing them down (link-local ``fe80::``, and
autoconfigured ones). Without them, a scan of the tally server's link-local
address, or a connection to its database over it, would not be "to the tally
server" for any rule.
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentinel.config import Config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The rule list that names this server: learned addresses join it too.
SELF_LIST = "tally_server"

_SIOCGIFADDR = 0x8915


def _ipv4_of(name: str) -> ipaddress.IPv4Address | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return ipaddress.IPv4Address(raw[20:24])


def local_addresses(interfaces: Sequence[str] = ()) -> list[IPAddress]:
    """Primary IPv4 address and every IPv6 address of ``interfaces`` (empty or
    ``any``: every interface), loopback excluded."""
    every = not interfaces or "any" in interfaces
    out: list[IPAddress] = []
    for _, name in socket.if_nameindex():
        if not every and name not in interfaces:
            continue
        a4 = _ipv4_of(name)
        if a4 is not None and not a4.is_loopback:
            out.append(a4)
    lines: list[str] = []
    # the calling thread's network namespace (thread-self), then the process's; never
    # /proc/net, which the unit's ProcSubset=pid hides
    for where in ("/proc/thread-self/net/if_inet6", "/proc/self/net/if_inet6"):
        try:
            lines = Path(where).read_text().splitlines()
            break
        except OSError:
            continue
    for line in lines:
        # address, index, prefix length, scope, flags, interface name
        parts = line.split()
        if len(parts) < 6 or (not every and parts[5] not in interfaces):
            continue
        a6 = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
        if not a6.is_loopback:
            out.append(a6)
    return out


def with_own_addresses(config: Config, found: Sequence[IPAddress] | None = None,
                       ) -> tuple[Config, list[IPAddress]]:
    """``config`` with the capture interfaces' own addresses it does not list added to
    ``host.addresses`` and to the ``tally_server`` list; and the addresses added.

    ``found`` is what the kernel says (read here when None). A config without a
    ``tally_server`` list gets none; the added items stand at the list's own place.
    """
    if found is None:
        found = local_addresses(config.network.interfaces)
    known = set(config.host.addresses)
    added = [a for a in dict.fromkeys(found) if a not in known]
    if not added:
        return config, []
    host = dataclasses.replace(config.host, addresses=(*config.host.addresses, *added))
    lists, item_marks = config.lists, config.list_item_marks
    if SELF_LIST in lists:
        listed = set(lists[SELF_LIST])
        extra = tuple(str(a) for a in added if str(a) not in listed)
        mark = config.list_marks.get(SELF_LIST)
        lists = {**lists, SELF_LIST: (*lists[SELF_LIST], *extra)}
        if mark is not None and SELF_LIST in item_marks:
            item_marks = {**item_marks,
                          SELF_LIST: (*item_marks[SELF_LIST], *(mark for _ in extra))}
    return dataclasses.replace(config, host=host, lists=lists, list_item_marks=item_marks,
                               learned_addresses=tuple(added)), added
