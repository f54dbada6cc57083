"""DNS messages from raw bytes: the question names and types, and the response code.

Only what the events need is read: the 12-byte header and the question
section. Names follow compression pointers anywhere inside the message,
forwards too (a mass scanner's version.bind probe points forwards, and resolvers
accept it), but at most :data:`MAX_POINTERS` of them per name, so a loop always
ends; a name may not exceed 255 bytes on the wire or 128 labels; anything else
is :class:`Malformed`.
"""

from __future__ import annotations

import struct

_HEADER = struct.Struct("!HHHHHH").unpack_from
_U16 = struct.Struct("!H").unpack_from
_QTAIL = struct.Struct("!HH").unpack_from

#: At most this many questions of one message become events (real messages have 1).
MAX_QUESTIONS = 8
MAX_NAME = 255
MAX_LABELS = 128
#: Compression pointers followed for one name (a name has at most 127 labels, and a
#: real message needs one pointer per name; more is a loop).
MAX_POINTERS = 32

QTYPES: dict[int, str] = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
    17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV",
    35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS",
    44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 59: "CDS",
    60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 255: "ANY", 256: "URI",
    257: "CAA",
}
RCODES: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}
_RCODE_TEXT = [RCODES.get(i, str(i)) for i in range(16)]

# Bytes that may appear in a label as themselves; others are written \DDD.
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_*/+=@:")
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


class Malformed(ValueError):
    """The bytes are not a well-formed packet or DNS message, or are cut short."""


_E_NAME_PAST_END = Malformed("name runs past the message")
_E_POINTER_CUT = Malformed("compression pointer cut short")
_E_POINTER_LOOP = Malformed("compression pointers loop")
_E_POINTER_OUTSIDE = Malformed("compression pointer outside the message")
_E_NAME_TOO_LONG = Malformed("name longer than 255 bytes")
_E_LABEL_PAST_END = Malformed("label runs past the message")
_E_SHORT_HEADER = Malformed("shorter than a DNS header")
_E_QTYPE_CUT = Malformed("question type cut short")
_E_TCP_LENGTH = Malformed("DNS-over-TCP length shorter than a header")

#: (qname, qtype, is_response, rcode) for one question.
Question = tuple[str, str, bool, str]


def _label_text(raw: bytes) -> str:
    if _PLAIN.issuperset(raw):
        return raw.decode("ascii")
    return "".join(chr(b) if b in _PLAIN else f"\\{b:03d}" for b in raw)


def read_name(buf: bytes, off: int, start: int, end: int) -> tuple[str, int]:
    """The name at ``off`` of the message spanning ``start:end``, and the offset after it.

    Lower case, no trailing dot; the root is ``"."``.
    """
    labels: list[str] = []
    wire = 0
    after = -1
    pos = off
    hops = 0
    while True:
        if pos >= end:
            raise _E_NAME_PAST_END
        n = buf[pos]
        if n == 0:
            pos += 1
            break
        if n >= 0xC0:
            if pos + 2 > end:
                raise _E_POINTER_CUT
            target = start + (_U16(buf, pos)[0] & 0x3FFF)
            if after < 0:
                after = pos + 2
            if target >= end:
                raise _E_POINTER_OUTSIDE
            hops += 1
            if hops > MAX_POINTERS:
                raise _E_POINTER_LOOP
            pos = target
            continue
        if n > 63:
            msg = f"label length byte {n:#x} is reserved"
            raise Malformed(msg)
        wire += n + 1
        if wire > MAX_NAME or len(labels) >= MAX_LABELS:
            raise _E_NAME_TOO_LONG
        if pos + 1 + n > end:
            raise _E_LABEL_PAST_END
        labels.append(_label_text(bytes(buf[pos + 1 : pos + 1 + n]).translate(_LOWER)))
        pos += 1 + n
    if after < 0:
        after = pos
    return (".".join(labels) if labels else "."), after


def parse_message(buf: bytes, start: int, end: int) -> list[Question]:
    """The questions of the DNS message in ``buf[start:end]``."""
    if end - start < 12:
        raise _E_SHORT_HEADER
    _, flags, qdcount, _, _, _ = _HEADER(buf, start)
    is_response = bool(flags & 0x8000)
    rcode = _RCODE_TEXT[flags & 0xF]
    out: list[Question] = []
    pos = start + 12
    for _ in range(min(qdcount, MAX_QUESTIONS)):
        name, pos = read_name(buf, pos, start, end)
        if pos + 4 > end:
            raise _E_QTYPE_CUT
        qtype = _QTAIL(buf, pos)[0]
        pos += 4
        out.append((name, QTYPES.get(qtype) or f"TYPE{qtype}", is_response, rcode))
    return out


def parse_tcp_stream(buf: bytes, start: int, end: int) -> list[Question]:
    """Questions of the length-prefixed DNS messages that start a TCP segment.

    Segments are not reassembled: a message split across segments is read only
    if its question section is in the first one.
    """
    out: list[Question] = []
    pos = start
    while pos + 2 <= end:
        length = _U16(buf, pos)[0]
        mstart = pos + 2
        mend = min(mstart + length, end)
        if length < 12:
            raise _E_TCP_LENGTH
        out.extend(parse_message(buf, mstart, mend))
        pos = mstart + length
    return out
