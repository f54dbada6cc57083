"""Signed attestations: the statement, its envelope, the chain, the folder.

An attestation file holds one JSON object (see README, "Public attestations")::

    {"public_key_id":"<hex>","signature":"<base64>","statement":{...}}

* ``signature`` is Ed25519 over ``canonical_json(statement)`` — the statement
  with keys sorted, no whitespace, non-ASCII escaped (:func:`canonical_json`).
* ``public_key_id`` is SHA-256 hex of the signer's raw 32-byte public key.
* The attestation's **hash** is SHA-256 hex of ``canonical_json`` of the whole
  object; the next statement's ``previous`` is that hash (64 zeros for the
  first, ``sequence`` 0), so the signed statements form a chain in which none
  can be dropped, reordered or replaced unnoticed.

The daemon writes ``attestation-<sequence, 8 digits>.json`` into one folder; a
file may also hold several attestations, one per line (JSON lines).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from sentinel.attest.keys import key_id
from sentinel.attest.merkle import canonical_json

FORMAT = "sentinel-attestation/1"
GENESIS = "0" * 64
_FILE = re.compile(r"^attestation-(\d{8,})\.json$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class AttestationError(Exception):
    """An attestation could not be read or written."""


@dataclass(frozen=True)
class Attestation:
    """One signed statement, and where it was read from (for messages)."""

    statement: dict[str, Any]
    signature: bytes
    public_key_id: str
    where: str = field(default="", compare=False)

    @property
    def sequence(self) -> int:
        return int(self.statement["sequence"])

    @property
    def previous(self) -> str:
        return str(self.statement["previous"])

    def envelope(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "public_key_id": self.public_key_id,
        }

    def to_bytes(self) -> bytes:
        """The file's content: the canonical envelope and a newline."""
        return canonical_json(self.envelope()) + b"\n"

    def digest(self) -> str:
        """The hash the next attestation's ``previous`` names."""
        return hashlib.sha256(canonical_json(self.envelope())).hexdigest()

    def signed_bytes(self) -> bytes:
        return canonical_json(self.statement)

    def signature_ok(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return False
        return True


def sign(statement: dict[str, Any], private: Ed25519PrivateKey) -> Attestation:
    """Sign ``statement`` (a JSON-able mapping without floats)."""
    sig = private.sign(canonical_json(statement))
    return Attestation(statement, sig, key_id(private.public_key()))


def parse(data: bytes | str, where: str) -> Attestation:
    """One attestation from its JSON; AttestationError says what is wrong."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        msg = f"{where}: not JSON ({exc})"
        raise AttestationError(msg) from None
    if not isinstance(obj, dict) or set(obj) != {"statement", "signature", "public_key_id"}:
        msg = f"{where}: an attestation is an object with statement, signature, public_key_id"
        raise AttestationError(msg)
    st = obj["statement"]
    if not isinstance(st, dict) or st.get("format") != FORMAT:
        msg = f"{where}: the statement's format is not {FORMAT!r}"
        raise AttestationError(msg)
    seq, prev = st.get("sequence"), st.get("previous")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        msg = f"{where}: statement.sequence is not a non-negative integer"
        raise AttestationError(msg)
    if not isinstance(prev, str) or not _HEX64.match(prev):
        msg = f"{where}: statement.previous is not a 64-digit hex hash"
        raise AttestationError(msg)
    try:
        sig = base64.b64decode(str(obj["signature"]), validate=True)
    except (binascii.Error, ValueError):
        msg = f"{where}: signature is not base64"
        raise AttestationError(msg) from None
    return Attestation(st, sig, str(obj["public_key_id"]), where)


def load_file(path: Path) -> list[Attestation]:
    """Every attestation in ``path``: one JSON object, or one per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"{path}: cannot read: {why}"
        raise AttestationError(msg) from exc
    lines = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
    if len(lines) <= 1:
        return [parse(text, str(path))]
    return [parse(s, f"{path}:{n}") for n, s in lines]


def load_folder(folder: Path) -> list[Attestation]:
    """Every ``attestation-*.json`` of ``folder``, by sequence; unreadable ones skipped."""
    out = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if _FILE.match(p.name):
                with contextlib.suppress(AttestationError):
                    out.extend(load_file(p))
    return sorted(out, key=lambda a: a.sequence)


@dataclass
class ChainReport:
    """What :func:`verify_chain` found, newest first."""

    checked: list[Attestation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Oddities that do not break the chain (a clock stepped back between two).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.checked)


def verify_chain(target: Attestation, candidates: list[Attestation],
                 public: Ed25519PublicKey, follow: bool = True) -> ChainReport:
    """Check ``target``'s signature and, with ``follow``, every link back to sequence 0.

    ``candidates`` are the attestations the previous ones are looked up in (by
    hash). Each must be signed by ``public`` and have a sequence one below the
    next one's. A time later than the next one's is a warning, not a break: the
    hashes fix the order, and a server clock stepped back must not void the chain.
    """
    report = ChainReport()
    by_digest = {a.digest(): a for a in candidates}
    want_id = key_id(public)
    current: Attestation | None = target
    while current is not None:
        where = current.where or f"attestation {current.sequence}"
        if current.public_key_id != want_id:
            report.problems.append(f"{where}: signed by key {current.public_key_id[:16]}…, not"
                                   f" by the given public key {want_id[:16]}…")
            return report
        if not current.signature_ok(public):
            report.problems.append(f"{where}: the signature does not verify: the statement"
                                   " was changed after signing or signed by another key")
            return report
        report.checked.append(current)
        if not follow or current.previous == GENESIS:
            if current.previous == GENESIS and current.sequence != 0:
                report.problems.append(f"{where}: sequence {current.sequence} claims to be"
                                       " the first of its chain")
            return report
        prev = by_digest.get(current.previous)
        if prev is None:
            report.problems.append(
                f"{where}: the chain is broken: no attestation with hash"
                f" {current.previous} (sequence {current.sequence - 1}) is present")
            return report
        if prev.sequence != current.sequence - 1:
            report.problems.append(f"{where}: sequence {current.sequence} follows sequence"
                                   f" {prev.sequence}")
            return report
        if str(prev.statement.get("time", "")) > str(current.statement.get("time", "")):
            report.warnings.append(f"{where}: its time {current.statement.get('time')} is"
                                   f" before its predecessor's {prev.statement.get('time')}"
                                   " (the server's clock was set back)")
        current = prev
    return report


class Store:
    """The folder of attestations. Appends are serialised by a lock file, so the
    daemon and a manual ``sentinel attest`` never write the same sequence."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, sequence: int) -> Path:
        return self.folder / f"attestation-{sequence:08d}.json"

    def latest(self) -> Attestation | None:
        """The attestation with the highest sequence, or None."""
        best: tuple[int, Path] | None = None
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                m = _FILE.match(p.name)
                if m and (best is None or int(m.group(1)) > best[0]):
                    best = (int(m.group(1)), p)
        if best is None:
            return None
        return load_file(best[1])[-1]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.folder.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            msg = f"{self.folder}: cannot create the attestation folder: {exc.strerror}"
            raise AttestationError(msg) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(self, make: Callable[[int, str], dict[str, Any]],
               private: Ed25519PrivateKey) -> tuple[Path, Attestation]:
        """Sign ``make(sequence, previous_hash)`` as the next link and write it."""
        with self._locked():
            last = self.latest()
            seq, prev = (0, GENESIS) if last is None else (last.sequence + 1, last.digest())
            att = sign(make(seq, prev), private)
            path = self.path_for(seq)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                tmp.write_bytes(att.to_bytes())
                with tmp.open("rb") as fh:
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)  # public by design: it is published
                os.rename(tmp, path)
                dfd = os.open(self.folder, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError as exc:
                msg = f"{path}: cannot write: {exc.strerror}"
                raise AttestationError(msg) from exc
            return path, att
