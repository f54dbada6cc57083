"""The Event type and the kinds of events sentinel produces (CONTRACT §3).

An event is a kind, a time, the host, the source that saw it and a flat map of
fields. Rules match on the names listed in :data:`KIND_FIELDS`; the common
names in :data:`COMMON_FIELDS` exist on every event.
"""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

COMMON_FIELDS: tuple[str, ...] = ("kind", "time", "host", "source")

#: The process behind an event, where the kernel could tell (#19): pid, parent pid,
#: executable (a name: ``process_exe_b64`` holds the raw bytes when not UTF-8), command
#: line (escaped text), uid and user, login uid and user (the account a person logged
#: in as, kept across sudo and su), session; ``process_via`` how it was learned
#: ("audit", "socket"), ``process_unknown`` why it is not known (None when it is).
ACTOR_FIELDS: tuple[str, ...] = (
    "process_pid", "process_ppid", "process_exe", "process_exe_b64", "process_command",
    "process_uid", "process_user", "process_login_uid", "process_login_user",
    "process_session", "process_via", "process_unknown",
    # the same in one line for people: "/usr/bin/curl (pid 4242, user operator1, uid 1000)",
    # or "not known (<why>)"; None when not looked up (attribution off, replay, a
    # connection this host did not open)
    "process",
)


_NET_ENDS = ("src_ip", "dst_ip", "direction", "src_internal", "dst_internal")
_FIM_FIELDS = (
    "path",
    "dest_path",
    "path_tags",
    "changed",
    "sha256_before",
    "sha256_after",
    "mode_before",
    "mode_after",
    "uid_before",
    "uid_after",
    "gid_before",
    "gid_after",
    "size_before",
    "size_after",
    "type_before",
    "type_after",
    "link_target_before",
    "link_target_after",
    "is_executable",
    "is_setuid",
    "is_setgid",
    "offline",
    # the lossless form of a name that is not valid UTF-8 (see name_fields)
    "path_b64",
    "dest_path_b64",
    "link_target_before_b64",
    "link_target_after_b64",
    *ACTOR_FIELDS,
)

#: Every event kind and the fields it carries besides the common ones.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    # probe: a TCP segment without SYN opened it (FIN, NULL, Xmas, ACK, Maimon, window
    # scans); midstream: a TCP flow whose SYN was not seen, picked up at its SYN-ACK or data
    "net.connection": (
        "proto", "src_ip", "src_port", "dst_ip", "dst_port", "direction",
        "src_internal", "dst_internal", "iface", "tcp_flags", "probe", "midstream",
        *ACTOR_FIELDS,
    ),
    # a TCP connection the other side accepted (SYN-ACK seen, or data on a flow picked up
    # mid-way); src is the side that opened it, as in net.connection
    "net.established": (
        "proto", "src_ip", "src_port", "dst_ip", "dst_port", "direction",
        "src_internal", "dst_internal", "iface", "tcp_flags", "midstream",
    ),
    # a SYN-ACK; src is the answering side (a server answering on a port)
    "net.tcp_synack": (
        "src_ip", "src_port", "dst_ip", "dst_port", "direction", "src_internal",
        "dst_internal", "iface", "tcp_flags", *ACTOR_FIELDS,
    ),
    "net.dns": (*_NET_ENDS, "qname", "qtype", "is_response", "rcode", "iface"),
    # an IP fragment that is an evasion signal: anomaly "tiny" (a first fragment too short
    # for its transport header) or "overlap" (the datagram was discarded, as Linux does)
    "net.fragment": (*_NET_ENDS, "proto", "anomaly", "ip_version", "iface"),
    # IPv6 neighbour discovery: op router_solicit, router_advert, neighbor_solicit,
    # neighbor_advert or redirect; target_ip the address it is about (not for routers;
    # a redirect's better first hop for redirected_ip, the destination it moves);
    # mac the link-layer address it claims ("" when it carries none)
    "net.ndp": (*_NET_ENDS, "op", "target_ip", "redirected_ip", "mac", "iface"),
    # what one source did, once it has been quiet for a minute (or the capture ended):
    # distinct ports and hosts it opened connections or sent probes to, and how many
    # were accepted; dst_ip is the one host when there was only one
    "net.scan": ("src_ip", "src_internal", "dst_ip", "ports", "hosts", "hosts_capped",
                 "connections", "probes", "answered", "duration", "iface"),
    # a station on the segment, learned from ARP and from the frames that open flows
    # (sender_ip then IPv4 or IPv6, the frame's): change "new" (a MAC first
    # seen after the first five minutes) or "flip_flop" (an address back on the MAC it
    # had before its last change); previous_mac the MAC it leaves
    "net.station": ("change", "sender_ip", "sender_mac", "previous_mac", "iface"),
    "net.arp": ("op", "sender_ip", "sender_mac", "target_ip", "target_mac", "iface"),
    # a redirect (type 5) names its new gateway (target_ip) and the destination whose
    # traffic it moves there (redirected_ip); None for every other message
    "net.icmp": (*_NET_ENDS, "type", "code", "target_ip", "redirected_ip", "iface"),
    "net.flow": (
        "proto", "src_ip", "src_port", "dst_ip", "dst_port", "direction",
        "src_internal", "dst_internal", "bytes_out", "bytes_in", "bytes_out_delta",
        "bytes_in_delta", "packets", "duration", "final", "iface", "established",
    ),
    "fim.created": _FIM_FIELDS,
    "fim.modified": _FIM_FIELDS,
    "fim.deleted": _FIM_FIELDS,
    "fim.moved": _FIM_FIELDS,
    "fim.attrib": _FIM_FIELDS,
    # raised by the FIM source itself when the baseline fails its signature
    "fim.baseline_invalid": ("path", "reason"),
    # a login attempt (sshd, login, PAM): success true/false; src_ip the remote end (absent
    # for a console login); method password, publickey, keyboard-interactive...; service
    # the program that wrote the record; invalid_user an account that does not exist;
    # failures_before / src_failures_before: failed logins of this user / from this
    # address in the 15 minutes before (cleared by a success), see sources/auth/parse.py
    "auth.login": ("user", "src_ip", "src_port", "method", "service", "success",
                   "invalid_user", "tty", "message", "failures_before",
                   "src_failures_before"),
    # a privilege change: sudo (command run as target_user) or su; success false when
    # refused (wrong password, not in sudoers)
    "auth.privilege": ("user", "target_user", "command", "service", "success", "tty",
                       "message"),
    # a kernel device event (NETLINK_KOBJECT_UEVENT): removable true for a block device the
    # kernel marks removable or one on the USB bus; vendor/model/serial where known
    "device.added": ("action", "subsystem", "devtype", "devname", "devpath", "removable",
                     "bus", "vendor", "model", "serial"),
    "device.removed": ("action", "subsystem", "devtype", "devname", "devpath", "removable",
                       "bus", "vendor", "model", "serial"),
    # the mount table changed (sentinel's mount namespace): removable true when the mounted
    # device is removable storage, None when the source is not a known block device
    "mount.added": ("mount_point", "fs_type", "mount_source", "mount_root", "removable"),
    "mount.removed": ("mount_point", "fs_type", "mount_source", "mount_root", "removable"),
}

_SOURCE_OF_PREFIX = {"net": "network", "fim": "fim", "auth": "auth", "device": "device",
                     "mount": "device"}
SOURCES: dict[str, str] = {k: _SOURCE_OF_PREFIX[k.split(".", 1)[0]] for k in KIND_FIELDS}


#: Fields that hold a file name: bytes to Linux, carried as :func:`name_fields` says.
NAME_FIELDS: tuple[str, ...] = ("path", "dest_path", "link_target_before", "link_target_after")


def name_text(raw: bytes) -> str:
    """The text of a file name: the name itself when it is valid UTF-8.

    Otherwise :func:`escaped_name`: every byte that is not part of valid UTF-8
    written ``\\xHH`` and every backslash ``\\\\``. An event says which form
    it is by carrying the ``<field>_b64`` twin only for a name that is not
    valid UTF-8.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return escaped_name(raw)


def escaped_name(name: str | bytes) -> str:
    """One text per name, whatever its bytes: UTF-8, with each backslash written
    ``\\\\`` and each byte that is not part of valid UTF-8 ``\\xHH``.

    Different names never give the same text, and a name without backslashes
    that is valid UTF-8 is its own text (what attestation leaves use).
    """
    out: list[str] = []
    for ch in os.fsencode(name).decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape keeps it
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def name_fields(name: str | bytes | None, field_name: str) -> dict[str, str | None]:
    """``{field: text, field_b64: base64 or None}`` for one file name.

    ``name`` is bytes, or text as Python's ``os`` functions give it on Linux
    (undecodable bytes kept as ``surrogateescape`` surrogates). ``field_b64``
    is None for a valid UTF-8 name (the text is then the name exactly) and the
    standard base64 of the raw bytes otherwise: the lossless form, whatever
    the name holds.
    """
    if name is None:
        return {field_name: None, f"{field_name}_b64": None}
    raw = os.fsencode(name)
    text = name_text(raw)
    valid = text.encode("utf-8", "surrogatepass") == raw
    return {field_name: text,
            f"{field_name}_b64": None if valid else base64.b64encode(raw).decode("ascii")}


def name_bytes(fields: dict[str, Any], field_name: str = "path") -> bytes | None:
    """The raw bytes of a name field of an event's JSON shape (the inverse of name_fields)."""
    b64 = fields.get(f"{field_name}_b64")
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            msg = f"{field_name}_b64 is not base64: {exc}"
            raise ValueError(msg) from exc
    text = fields.get(field_name)
    return None if text is None else str(text).encode("utf-8", "surrogatepass")


#: Unicode categories never drawn as themselves where a person reads a name:
#: controls (C0, DEL, C1), format characters (bidirectional overrides and
#: isolates such as U+202E, zero-width joiners and spaces, the BOM), line and
#: paragraph separators, and surrogates.
_HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def visible(text: str) -> str:
    """``text`` for people: each control, format or bidi character as ``\\xHH``/``\\uHHHH``.

    A name like ``invoice\u202efdp.exe`` is then shown as written, not
    reordered by the reader's display; nothing else is changed.
    """
    if text.isprintable():  # fast path: no Cc/Cf/Z*/Cs at all (and no other separators)
        return text
    out: list[str] = []
    for ch in text:
        if unicodedata.category(ch) in _HIDDEN:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else
                       f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(ch)
    return "".join(out)


def shown_name(name: str | bytes) -> str:
    """A name (or a sentence holding one) for a log line: a terminal must not be
    sent its escape sequences, nor a lone surrogate that cannot be written."""
    return visible(escaped_name(name))


def format_time(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2024-02-14T06:05:00.123Z``."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """Parse an RFC 3339 time (``Z`` or an offset) into a POSIX timestamp."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        msg = f"time {text!r} has no timezone"
        raise ValueError(msg)
    return dt.timestamp()


@dataclass(slots=True)
class Event:
    """One observation. ``time`` is a POSIX timestamp (packet or inotify time)."""

    kind: str
    time: float
    host: str
    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    #: Set by a source that must know when the event is safe: the daemon calls it
    #: once with True when every alert of the event is in the journal (or none was
    #: raised), or with False when one could not be journaled. Not part of the
    #: event's JSON shape.
    ack: Callable[[bool], None] | None = field(default=None, repr=False, compare=False)

    def get(self, name: str, default: Any = None) -> Any:
        """A field by name, the common ones included (``time`` as RFC 3339 text)."""
        if name in self.fields:
            return self.fields[name]
        if name == "kind":
            return self.kind
        if name == "host":
            return self.host
        if name == "source":
            return self.source
        if name == "time":
            return format_time(self.time)
        return default

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of CONTRACT §3."""
        return {
            "kind": self.kind,
            "time": format_time(self.time),
            "host": self.host,
            "source": self.source,
            **self.fields,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], host: str = "example") -> Event:
        """Build an event from its JSON shape (rule examples, tests).

        ``source`` is derived from ``kind`` when absent; ``time`` defaults to 0.
        """
        d = dict(data)
        kind = str(d.pop("kind"))
        raw_time = d.pop("time", None)
        ts = parse_time(raw_time) if isinstance(raw_time, str) else float(raw_time or 0.0)
        source = str(d.pop("source", SOURCES.get(kind, "network")))
        ev_host = str(d.pop("host", host))
        return cls(kind, ts, ev_host, source, d)
