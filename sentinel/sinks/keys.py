"""HMAC keys for the journal: read from an env var or a file, made on first use.

A key file holds the key as hex on one line (what :func:`load_key` writes when
it creates one: 32 random bytes). A file or env value that is not hex is used
as raw bytes. Either way the key must be at least 16 bytes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sentinel.config import KeySource

MIN_KEY_BYTES = 16


class JournalKeyError(Exception):
    """A key could not be read or created; the message says which and why."""


def parse_key(raw: bytes, origin: str) -> bytes:
    """The key bytes from a file's or env var's content."""
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = text
    if len(key) < MIN_KEY_BYTES:
        msg = (f"{origin}: the key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
               " (hex of 32 random bytes is made for you when the file is absent)")
        raise JournalKeyError(msg)
    return key


def read_key_file(path: Path) -> bytes:
    """Read an existing key file."""
    try:
        return parse_key(path.read_bytes(), f"key file {path}")
    except OSError as exc:
        msg = f"key file {path}: cannot read: {exc.strerror}"
        raise JournalKeyError(msg) from exc


def load_key(source: KeySource, state_dir: Path, create: bool = True,
             default_file: Path = Path("journal.key")) -> bytes:
    """The key ``source`` names (``default_file`` if neither); a relative file is
    under ``state_dir``.

    With ``create``, an absent key file is generated (mode 0600, its folder
    0700 when made here). Verification passes ``create=False``: a verifier
    that invented a key would only ever report tampering.
    """
    if source.env is not None:
        value = os.environ.get(source.env, "")
        if not value:
            msg = f"environment variable {source.env} (the journal key) is not set"
            raise JournalKeyError(msg)
        return parse_key(value.encode(), f"environment variable {source.env}")
    file_ = source.file if source.file is not None else default_file
    path = file_ if file_.is_absolute() else state_dir / file_
    if path.exists() or not create:
        return read_key_file(path)
    return _create_key(path)


def _create_key(path: Path) -> bytes:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # another process made it between our check and open: use theirs
        return read_key_file(path)
    except OSError as exc:
        msg = f"key file {path}: cannot create: {exc.strerror}"
        raise JournalKeyError(msg) from exc
    key = secrets.token_bytes(32)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key
