"""IPv6 addresses in events read as the config writes them (RFC 5952), whichever way
the text is made: the quick C-library path and the standard library's agree."""

from __future__ import annotations

import ipaddress
import random

from sentinel.sources.net.emitter import ipv6_text


def _addresses() -> list[bytes]:
    rng = random.Random(5952)
    out = []
    # every pattern of zero groups (where "::" may go), with three kinds of others
    for mask in range(256):
        for v in (0x1, 0xAB, 0xFFFF):
            out.append(b"".join((0 if mask >> i & 1 else v).to_bytes(2, "big")
                                for i in range(8)))
    for _ in range(20_000):
        out.append(b"".join(rng.choice([0, 0, 1, 0xFFFF, 0x10, rng.randrange(65536)])
                            .to_bytes(2, "big") for _ in range(8)))
    # IPv4-mapped and -compatible: the standard library's form, not a dotted tail
    out += [bytes(10) + b"\xff\xff" + bytes([10, 20, 0, 10]), bytes(12) + bytes([1, 2, 3, 4]),
            bytes(15) + b"\x01", bytes(16)]
    return out


def test_ipv6_text_is_the_rfc_5952_form_of_every_address() -> None:
    for raw in _addresses():
        assert ipv6_text(raw) == str(ipaddress.IPv6Address(raw)), raw.hex()
    assert ipv6_text(bytes(10) + b"\xff\xff" + bytes([10, 20, 0, 10])) == "::ffff:a14:a"
    assert ipv6_text(bytes.fromhex("20010db8000000000000000000000001")) == "2001:db8::1"
