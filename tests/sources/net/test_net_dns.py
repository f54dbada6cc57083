"""DNS question parsing: names, compression pointers and their limits, types and codes."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.dns import DNS, DNSQR

from sentinel.sources.net.dns import Malformed, parse_message, parse_tcp_stream, read_name


def header(qdcount: int = 1, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 7, flags, qdcount, 0, 0, 0)


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


def test_question_from_a_scapy_query_lower_cased_without_trailing_dot() -> None:
    msg = bytes(DNS(rd=1, qd=DNSQR(qname="Mail.KPU.go.ID.", qtype="MX")))
    assert parse_message(msg, 0, len(msg)) == [("mail.kpu.go.id", "MX", False, "NOERROR")]


def test_response_flag_rcode_names_and_unknown_types() -> None:
    msg = header(flags=0x8183) + name(b"x", b"example") + struct.pack("!HH", 65280, 1)
    assert parse_message(msg, 0, len(msg)) == [("x.example", "TYPE65280", True, "NXDOMAIN")]
    msg = header(flags=0x800C) + b"\0" + struct.pack("!HH", 2, 1)
    assert parse_message(msg, 0, len(msg)) == [(".", "NS", True, "12")]


def test_compression_pointer_in_a_second_question() -> None:
    first = name(b"www", b"kpu", b"go", b"id")
    second = b"\x03api" + struct.pack("!H", 0xC000 | (12 + 4))  # api + pointer to kpu.go.id
    msg = header(qdcount=2) + first + struct.pack("!HH", 1, 1) + second + struct.pack("!HH",
                                                                                      28, 1)
    assert [q[:2] for q in parse_message(msg, 0, len(msg))] == [
        ("www.kpu.go.id", "A"), ("api.kpu.go.id", "AAAA")]


def test_pointer_to_itself_or_outside_the_message_is_malformed() -> None:
    loop = header() + struct.pack("!H", 0xC000 | 12) + struct.pack("!HH", 1, 1)
    with pytest.raises(Malformed):
        parse_message(loop, 0, len(loop))
    outside = header() + struct.pack("!H", 0xC000 | 200) + struct.pack("!HH", 1, 1)
    with pytest.raises(Malformed):
        parse_message(outside, 0, len(outside))


def test_forward_compression_pointer_is_decoded() -> None:
    """#17.8: a question whose name points forwards (a mass scanner's version.bind probe)."""
    msg = (header(flags=0) + struct.pack("!H", 0xC000 | 18) + struct.pack("!HH", 16, 3)
           + name(b"version", b"bind"))
    assert parse_message(msg, 0, len(msg)) == [("version.bind", "TXT", False, "NOERROR")]


def test_pointer_chain_that_goes_backwards_then_loops_is_malformed() -> None:
    # name at 12 = "a" then pointer to 17; at 17 a pointer back to 12: a cycle
    msg = header() + b"\x01a" + struct.pack("!H", 0xC000 | 17) + b"\x00" + struct.pack(
        "!H", 0xC000 | 12)
    with pytest.raises(Malformed):
        read_name(msg, 17, 0, len(msg))


def test_name_and_label_length_limits() -> None:
    long_name = name(*([b"a" * 63] * 4))  # 4 * 64 + 1 = 257 bytes > 255
    msg = header() + long_name + struct.pack("!HH", 1, 1)
    with pytest.raises(Malformed):
        parse_message(msg, 0, len(msg))
    reserved = header() + b"\x45" + b"a" * 69 + b"\0" + struct.pack("!HH", 1, 1)
    with pytest.raises(Malformed):
        parse_message(reserved, 0, len(reserved))


def test_truncated_messages_are_malformed() -> None:
    msg = bytes(DNS(qd=DNSQR(qname="kpu.go.id")))
    for cut in (5, 12, 15, len(msg) - 2):
        with pytest.raises(Malformed):
            parse_message(msg, 0, cut)


def test_unusual_label_bytes_are_escaped() -> None:
    msg = header() + name(b"a.b", b"\x00\xff", b"Z") + struct.pack("!HH", 16, 1)
    assert parse_message(msg, 0, len(msg))[0][0] == "a\\046b.\\000\\255.z"


def test_tcp_stream_with_two_length_prefixed_messages() -> None:
    one = bytes(DNS(id=1, qd=DNSQR(qname="a.kpu.go.id", qtype="A")))
    two = bytes(DNS(id=2, qd=DNSQR(qname="b.kpu.go.id", qtype="TXT")))
    stream = struct.pack("!H", len(one)) + one + struct.pack("!H", len(two)) + two
    assert [q[:2] for q in parse_tcp_stream(stream, 0, len(stream))] == [
        ("a.kpu.go.id", "A"), ("b.kpu.go.id", "TXT")]
    with pytest.raises(Malformed):
        parse_tcp_stream(b"\x00\x05hello", 0, 7)
