"""Capture file readers: classic pcap (micro- and nanosecond, either byte order) and pcapng.

The file is memory-mapped and walked in place: each record is yielded as
``(time, offset, captured length, wire length, link type)`` so the decoder
reads the frame straight from the mapping. A file that ends in the middle of a
record stops there and sets :attr:`CaptureFile.truncated`.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path

#: (time, offset of the frame, captured length, length on the wire, link type)
Record = tuple[float, int, int, int, int]

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM = 0x1A2B3C4D


class CaptureFileError(Exception):
    """The file cannot be read as a capture (missing, unreadable, or not pcap/pcapng)."""


class CaptureFile:
    """One capture file, mapped into memory; iterate :meth:`records`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = False
        self.format = ""
        try:
            with path.open("rb") as fh:
                size = path.stat().st_size
                if size < 24:
                    msg = f"{path}: not a pcap or pcapng file (only {size} bytes)"
                    raise CaptureFileError(msg)
                self.data: mmap.mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            msg = f"{path}: cannot read: {exc.strerror or exc}"
            raise CaptureFileError(msg) from exc
        head = self.data[:4]
        if head in _PCAP_MAGIC:
            self.format = "pcap"
        elif head == _PCAPNG_SHB:
            self.format = "pcapng"
        else:
            self.close()
            msg = (f"{path}: not a pcap or pcapng file (starts with {head.hex()});"
                   " valid: a classic pcap (magic a1b2c3d4 or a1b23c4d, either byte order) or a"
                   " pcapng capture file")
            raise CaptureFileError(msg)

    def close(self) -> None:
        self.data.close()

    def records(self) -> Iterator[Record]:
        """Every packet record in file order."""
        if self.format == "pcap":
            return self._pcap()
        return self._pcapng()

    def _pcap(self) -> Iterator[Record]:
        data = self.data
        order, scale = _PCAP_MAGIC[data[:4]]
        linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
        header = struct.Struct(order + "IIII").unpack_from
        size = len(data)
        off = 24
        while off + 16 <= size:
            sec, frac, incl, orig = header(data, off)
            off += 16
            if off + incl > size:
                self.truncated = True
                return
            yield sec + frac * scale, off, incl, orig, linktype
            off += incl
        if off != size:
            self.truncated = True

    def _pcapng(self) -> Iterator[Record]:
        data = self.data
        size = len(data)
        off = 0
        order = "<"
        u32 = struct.Struct("<I").unpack_from
        # per interface of the current section: (link type, seconds per tick, offset)
        ifaces: list[tuple[int, float, float]] = []
        last_ts = 0.0
        while off + 12 <= size:
            btype = struct.unpack_from(order + "I", data, off)[0]
            if btype == 0x0A0D0D0A:
                bom = struct.unpack_from("<I", data, off + 8)[0]
                order = "<" if bom == _BOM else ">"
                u32 = struct.Struct(order + "I").unpack_from
                ifaces = []
            blen = u32(data, off + 4)[0]
            if blen < 12 or blen % 4 or off + blen > size:
                self.truncated = True
                return
            body = off + 8
            if btype == 1 and blen >= 20:
                linktype = struct.unpack_from(order + "H", data, body)[0]
                ifaces.append((linktype, *self._idb_options(body + 8, off + blen - 4, order)))
            elif btype == 6 and blen >= 32:
                iface, hi, lo, incl, orig = struct.unpack_from(order + "IIIII", data, body)
                if iface < len(ifaces) and body + 20 + incl <= off + blen:
                    linktype, tick, tsoff = ifaces[iface]
                    last_ts = ((hi << 32) | lo) * tick + tsoff
                    yield last_ts, body + 20, incl, orig, linktype
            elif btype == 3 and blen >= 16 and ifaces:
                orig = u32(data, body)[0]
                yield last_ts, body + 4, min(orig, blen - 16), orig, ifaces[0][0]
            elif btype == 2 and blen >= 32:
                iface, _, hi, lo, incl, orig = struct.unpack_from(order + "HHIIII", data, body)
                if iface < len(ifaces) and body + 20 + incl <= off + blen:
                    linktype, tick, tsoff = ifaces[iface]
                    last_ts = ((hi << 32) | lo) * tick + tsoff
                    yield last_ts, body + 20, incl, orig, linktype
            off += blen

    def _idb_options(self, off: int, end: int, order: str) -> tuple[float, float]:
        tick, tsoff = 1e-6, 0.0
        data = self.data
        while off + 4 <= end:
            code, length = struct.unpack_from(order + "HH", data, off)
            if code == 0:
                break
            value = off + 4
            if code == 9 and length >= 1:
                raw = data[value]
                tick = 2.0 ** -(raw & 0x7F) if raw & 0x80 else 10.0 ** -raw
            elif code == 14 and length >= 8:
                tsoff = float(struct.unpack_from(order + "q", data, value)[0])
            off = value + (length + 3) // 4 * 4
        return tick, tsoff
