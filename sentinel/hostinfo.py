"""The host's own addresses and gateways, read from the kernel.

``local_addresses`` is the default for ``host.addresses``. ``with_own_addresses``
adds to a configured ``host.addresses`` (and to the rule list ``tally_server``,
which names this same server) every address the kernel has given the capture
interfaces that the config does not list: above all the IPv6 addresses a Linux
server gets without anyone writing them down (link-local ``fe80::``, and
autoconfigured ones). Without them, a scan of the tally server's link-local
address, or a connection to its database over it, would not be "to the tally
server" for any rule.

It adds the next hops of the capture interfaces' default routes to the rule list
``gateway_ip`` the same way: an IPv6 router is known by its link-local address,
which nobody writes in a config, so a neighbour advertisement that claims it for
another MAC would otherwise not be "the gateway spoofed". A default route an
attacker planted (a rogue router advertisement or DHCP lease, each an alert of
its own) makes its next hop a "gateway" too, whose every claim by a MAC outside
``gateway_mac`` is then reported as gateway spoofing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import math
import socket
import struct
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentinel.config import Config
    from sentinel.located import Mark

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The rule list that names this server: learned addresses join it too.
SELF_LIST = "tally_server"
#: The rule list that names the gateway: the default routes' next hops join it.
GATEWAY_LIST = "gateway_ip"
#: At most this many gateways per IP version are learned. A site has one (two with a
#: standby router); more default routes than that are router advertisements from
#: others (a flood of them makes thousands), which are alerts of their own, and which
#: of them is the real gateway the routing table cannot say: then none is learned.
MAX_GATEWAYS = 2
#: ``flags`` of a route through a gateway (linux/route.h RTF_GATEWAY).
_RTF_GATEWAY = 0x0002
#: An IPv6 address whose duplicate-address detection failed (linux/if_addr.h): another
#: machine answers for it (or an attacker claims every new address), so it is not ours.
_IFA_F_DADFAILED = 0x08

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
    for line in _proc_net("if_inet6"):
        # address, index, prefix length, scope, flags, interface name
        parts = line.split()
        if len(parts) < 6 or (not every and parts[5] not in interfaces):
            continue
        if int(parts[4], 16) & _IFA_F_DADFAILED:
            continue
        a6 = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
        if not a6.is_loopback:
            out.append(a6)
    return out


def _proc_net(name: str) -> list[str]:
    """The lines of a /proc/net table in the calling thread's network namespace
    (thread-self), else the process's; never /proc/net, which the unit's
    ProcSubset=pid hides. None readable: no lines."""
    for where in (f"/proc/thread-self/net/{name}", f"/proc/self/net/{name}"):
        try:
            return Path(where).read_text().splitlines()
        except OSError:
            continue
    return []


def local_gateways(interfaces: Sequence[str] = ()) -> list[IPAddress]:
    """The next hops of the default routes (IPv4, then IPv6) of ``interfaces`` (empty
    or ``any``: every interface), as the kernel's routing tables give them."""
    every = not interfaces or "any" in interfaces
    out: list[IPAddress] = []
    for line in _proc_net("route")[1:]:  # a header line, then one route a line
        # interface, destination, gateway, flags, refcnt, use, metric, mask, ...
        parts = line.split()
        if len(parts) < 8 or (not every and parts[0] not in interfaces):
            continue
        if parts[1] != "00000000" or parts[7] != "00000000":
            continue
        if int(parts[3], 16) & _RTF_GATEWAY and parts[2] != "00000000":
            # the kernel prints the address as a number in the host's byte order
            out.append(ipaddress.IPv4Address(int(parts[2], 16).to_bytes(4, sys.byteorder)))
    for line in _proc_net("ipv6_route"):
        # destination, its length, source, its length, next hop, metric, refcnt, use,
        # flags, interface
        parts = line.split()
        if len(parts) < 10 or (not every and parts[9] not in interfaces):
            continue
        if parts[1] != "00" or parts[0] != "0" * 32 or parts[4] == "0" * 32:
            continue
        if int(parts[8], 16) & _RTF_GATEWAY:
            out.append(ipaddress.IPv6Address(bytes.fromhex(parts[4])))
    return list(dict.fromkeys(out))


def with_own_addresses(config: Config, found: Sequence[IPAddress] | None = None,
                       gateways: Sequence[IPAddress] | None = None,
                       ) -> tuple[Config, list[IPAddress]]:
    """``config`` with the capture interfaces' own addresses it does not list added to
    ``host.addresses`` and to the ``tally_server`` list, and their default routes'
    next hops it does not list added to the ``gateway_ip`` list; and the addresses
    added (``learned_addresses``; the gateways are ``learned_gateways``).

    ``found`` and ``gateways`` are what the kernel says (read here when None). A
    config without the list gets none; added items stand at the list's own place.
    """
    if found is None:
        found = local_addresses(config.network.interfaces)
    if gateways is None:
        gateways = local_gateways(config.network.interfaces)
    known = set(config.host.addresses)
    added = [a for a in dict.fromkeys(found) if a not in known]
    lists, item_marks = config.lists, config.list_item_marks
    new_gws: list[IPAddress] = []
    if GATEWAY_LIST in lists:
        listed_gws = addresses_of(lists[GATEWAY_LIST])
        new_gws = [g for g in learnable_gateways(gateways) if g not in listed_gws]
    if not added and not new_gws:
        return config, []
    host = dataclasses.replace(config.host, addresses=(*config.host.addresses, *added))
    for name, items in ((SELF_LIST, added), (GATEWAY_LIST, new_gws)):
        if name in lists and items:
            lists, item_marks = _appended(config, lists, item_marks, name, items)
    return dataclasses.replace(config, host=host, lists=lists, list_item_marks=item_marks,
                               learned_addresses=tuple(added),
                               learned_gateways=tuple(new_gws)), added


def learnable_gateways(gateways: Sequence[IPAddress]) -> list[IPAddress]:
    """``gateways`` without those of an IP version that has over MAX_GATEWAYS."""
    unique = list(dict.fromkeys(gateways))
    # counted once per version: an RA flood makes thousands, every 10 seconds
    per_version = Counter(g.version for g in unique)
    return [g for g in unique if per_version[g.version] <= MAX_GATEWAYS]


def addresses_of(items: Sequence[object]) -> set[IPAddress]:
    """The single addresses among list items (networks and names left out)."""
    out: set[IPAddress] = set()
    for item in items:
        try:
            out.add(ipaddress.ip_address(str(item)))
        except ValueError:  # a network or a name: not one address to compare
            continue
    return out


def _appended(config: Config, lists: dict[str, tuple[object, ...]],
              item_marks: dict[str, tuple[Mark, ...]], name: str,
              items: Sequence[IPAddress]) -> tuple[dict[str, tuple[object, ...]],
                                                    dict[str, tuple[Mark, ...]]]:
    """``lists`` with ``items`` not yet in list ``name`` appended, each marked where
    the list is (no file line names a learned item)."""
    listed = {str(v) for v in lists[name]}
    extra = tuple(str(a) for a in items if str(a) not in listed)
    lists = {**lists, name: (*lists[name], *extra)}
    mark = config.list_marks.get(name)
    if mark is not None and name in item_marks:
        item_marks = {**item_marks, name: (*item_marks[name], *(mark for _ in extra))}
    return lists, item_marks


#: rtnetlink multicast groups (linux/rtnetlink.h): IPv4 and IPv6 addresses and routes.
_RTMGRP_IPV4_IFADDR, _RTMGRP_IPV4_ROUTE = 0x10, 0x40
_RTMGRP_IPV6_IFADDR, _RTMGRP_IPV6_ROUTE = 0x100, 0x400
_NETLINK_ROUTE = 0
#: At most this many notices are read at one look: more still means "changed".
_MAX_NOTICES = 256


class AddressNotices:
    """The kernel's notices of address and route changes (rtnetlink), so that a new
    address or default route is counted at the daemon's next tick instead of at its
    next poll.

    ``changed()`` reads what arrived since the last look, without blocking: True when
    anything did (or the kernel dropped notices for want of buffer: something did).
    Opened in the calling thread's network namespace; ``open()`` returns None where
    no rtnetlink socket can be had, and the caller goes on polling.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def open(cls) -> AddressNotices | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                 _NETLINK_ROUTE)
        except (OSError, AttributeError):
            return None
        try:
            sock.bind((0, _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV4_ROUTE | _RTMGRP_IPV6_IFADDR
                       | _RTMGRP_IPV6_ROUTE))
        except OSError:
            sock.close()
            return None
        return cls(sock)

    def changed(self) -> bool:
        got = False
        for _ in range(_MAX_NOTICES):
            try:
                self._sock.recv(65536)
            except BlockingIOError:
                return got
            except OSError:  # ENOBUFS: notices were dropped, so there were some
                return True
            got = True
        return True

    def close(self) -> None:
        self._sock.close()


class AddressLooks:
    """When the daemon compares its own addresses with those counted: every ``gap``
    seconds (the poll), and at the first tick after the kernel's notice of a change,
    but no sooner than ``gap`` after the last change found. Router advertisements of
    short-lived prefixes make the kernel add and drop addresses every second; each
    change found is a reload and an alert, so after one the next waits.

    ``noticed(now)`` records a notice; ``due(now)`` says whether to look now
    (``notice`` or ``poll``) or not (None); ``changed(now)`` records that a look
    found a change."""

    def __init__(self, now: float, gap: float) -> None:
        self.gap = gap
        self._poll_at = now + gap
        self._notice_at: float | None = None
        self._changed_at = -math.inf

    def noticed(self, now: float) -> None:
        if self._notice_at is None:
            self._notice_at = max(now, self._changed_at + self.gap)

    def due(self, now: float) -> str | None:
        by_notice = self._notice_at is not None and now >= self._notice_at
        if not by_notice and now < self._poll_at:
            return None
        self._poll_at = now + self.gap
        self._notice_at = None
        return "notice" if by_notice else "poll"

    def changed(self, now: float) -> None:
        self._changed_at = now
