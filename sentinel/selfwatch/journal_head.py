"""The journal's signed head: what makes cutting records off its end visible.

The hash chain shows any edit, deletion or reordering inside the journal, but
not records cut off its end: what is left is still a valid chain. So the
daemon keeps, beside the journal, the head it last wrote::

    <journal>.head = {"records": N, "head": "<mac of record N-1>", "mac": "<64 hex>"}

``mac`` is HMAC-SHA256 under the journal key of ``sentinel-journal-head/1``,
NUL, N, NUL, head: nobody without the key can write a marker for a shorter
journal. It is replaced atomically (write beside, fsync, rename) after every
append. A journal with fewer records than its marker, or whose record N-1 has
another MAC, was cut. The latest attestation's signed journal head is checked
the same way, so deleting the marker too does not hide the cut.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sentinel.sinks.journal import decode_record, journal_files

_DOMAIN = b"sentinel-journal-head/1"


def marker_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".head")


def _mac(key: bytes, records: int, head: str) -> str:
    msg = b"\0".join((_DOMAIN, str(records).encode(), head.encode()))
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


class HeadMarker:
    """Writes the signed head after each append (``update``) and reads it back."""

    def __init__(self, journal: Path, key: bytes) -> None:
        self.path = marker_path(journal)
        self.journal = journal
        self._key = key
        self._last: tuple[int, str] | None = None

    def update(self, head: tuple[int, str]) -> None:
        """Record ``(records, head mac)``; a write error raises OSError."""
        if head == self._last:
            return
        records, mac = head
        body = json.dumps({"records": records, "head": mac,
                           "mac": _mac(self._key, records, mac)}).encode() + b"\n"
        tmp = self.path.with_name(self.path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, body)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.path)
        self._last = head

    def read(self) -> tuple[int, str] | None:
        """The signed head, None when there is no marker; ValueError when it is forged."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            msg = f"{self.path}: not a journal head marker ({exc})"
            raise ValueError(msg) from None
        try:
            records, head, mac = int(data["records"]), str(data["head"]), str(data["mac"])
        except (KeyError, TypeError, ValueError):
            msg = f"{self.path}: not a journal head marker"
            raise ValueError(msg) from None
        if not hmac.compare_digest(mac, _mac(self._key, records, head)):
            msg = f"{self.path}: its MAC does not match the journal key: forged or foreign"
            raise ValueError(msg)
        return records, head


def mac_at(journal: Path, key: bytes, seq: int) -> str | None:
    """The MAC of record ``seq`` (its text, not re-verified: the chain walk does that)."""
    for f in journal_files(journal):
        with f.open("rb") as fh:
            for raw in fh:
                decoded = decode_record(key, raw.rstrip(b"\n"))
                if decoded is not None and decoded[0]["seq"] == seq:
                    return str(decoded[0]["mac"])
    return None


@dataclass(frozen=True)
class Cut:
    """The journal is shorter than a signed head says: what was expected, what is there."""

    expected_records: int
    expected_head: str
    found_records: int
    found_head: str
    witness: str  # "marker" or "attestation N"

    def describe(self, journal: Path) -> str:
        if self.found_records < self.expected_records:
            return (f"{journal}: {self.expected_records - self.found_records} record(s) cut off"
                    f" the end: the {self.witness} signed {self.expected_records} records"
                    f" (head {self.expected_head[:16]}…), the journal holds"
                    f" {self.found_records}")
        return (f"{journal}: record {self.expected_records - 1} is not the one the"
                f" {self.witness} signed: the end was cut and rewritten")


def check_head(journal: Path, key: bytes, found: tuple[int, str],
               signed: tuple[int, str], witness: str) -> Cut | None:
    """Compare the journal's head ``found`` with a signed ``(records, head)``."""
    records, head = signed
    if records == 0:
        return None
    if found == signed:
        return None
    if found[0] < records:
        return Cut(records, head, found[0], found[1], witness)
    # more records than signed (written after the marker, or by a replay): the one
    # the witness signed must still be there, with the same MAC
    if mac_at(journal, key, records - 1) != head:
        return Cut(records, head, found[0], found[1], witness)
    return None


def attested_head(folder: Path, host: str) -> tuple[tuple[int, str], str] | None:
    """The journal head signed in the latest attestation of ``folder`` for ``host``."""
    from sentinel.attest.statement import AttestationError, Store

    with contextlib.suppress(AttestationError, OSError):
        att = Store(folder).latest()
        if att is not None and att.statement.get("host") == host:
            j = att.statement.get("journal") or {}
            with contextlib.suppress(KeyError, TypeError, ValueError):
                return (int(j["records"]), str(j["head"])), f"attestation {att.sequence}"
    return None
