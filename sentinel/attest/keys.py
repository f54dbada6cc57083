"""Ed25519 keys for attestations: make the pair, read each half, name a key.

The private key is PKCS#8 PEM, written 0600 and never overwritten; the public
key is SubjectPublicKeyInfo PEM (what ``openssl pkey -pubout`` prints), the
file the commission publishes. A key's id is the SHA-256 (hex) of its 32 raw
public bytes, so a reader can tell which published key signed a statement.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from sentinel import keys

PRIVATE_NAME = "attest.key"
PUBLIC_NAME = "attest.pub"


class AttestKeyError(Exception):
    """A key could not be made or read; the message says which file and why."""


def key_id(public: Ed25519PublicKey) -> str:
    """SHA-256 hex of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        msg = f"{path} already exists; a key is never overwritten (move it away first)"
        raise AttestKeyError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot create: {exc.strerror}"
        raise AttestKeyError(msg) from exc
    try:
        os.fchmod(fd, mode)  # the umask must not loosen a private key
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_keypair(private_path: Path, public_path: Path | None = None) -> tuple[Path, Path]:
    """Write a new private key (0600) and its public half (default: beside it, ``.pub``)."""
    public_path = public_path or private_path.with_suffix(".pub")
    for p in (private_path, public_path):
        if p.exists():
            msg = f"{p} already exists; a key is never overwritten (move it away first)"
            raise AttestKeyError(msg)
    try:
        private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        public_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the folder for {private_path}: {exc.strerror}"
        raise AttestKeyError(msg) from exc
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, public_pem(private.public_key()), 0o644)
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read the signing key with the checks every key gets (`keys.read_private_file`)."""
    try:
        data = keys.read_private_file(path, "attestation")
    except FileNotFoundError:
        msg = f"attestation key {path}: cannot read: it does not exist"
        raise AttestKeyError(msg) from None
    except keys.KeyUnavailable as exc:
        raise AttestKeyError(str(exc)) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        msg = f"attestation key {path}: not an unencrypted PEM private key"
        raise AttestKeyError(msg) from exc
    if not isinstance(key, Ed25519PrivateKey):
        msg = f"attestation key {path}: not an Ed25519 key"
        raise AttestKeyError(msg)
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a published public key (PEM, or the 32 raw bytes as 64 hex digits)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"public key {path}: cannot read: {exc.strerror}"
        raise AttestKeyError(msg) from exc
    text = data.strip()
    if len(text) == 64:
        try:
            return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        msg = f"public key {path}: not a PEM public key (or 64 hex digits)"
        raise AttestKeyError(msg) from exc
    if not isinstance(key, Ed25519PublicKey):
        msg = f"public key {path}: not an Ed25519 key"
        raise AttestKeyError(msg)
    return key
