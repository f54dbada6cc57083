"""The HMAC key that chains the journal (see :mod:`sentinel.keys`)."""

from __future__ import annotations

from pathlib import Path

from sentinel import keys
from sentinel.config import KeySource

__all__ = ["JournalKeyError", "load_key", "read_key_file"]


class JournalKeyError(Exception):
    """The journal key could not be read or created; the message says which and why."""


def load_key(source: KeySource, state_dir: Path, create: bool = True) -> bytes:
    """The journal key; a missing key file is made when ``create``."""
    try:
        return keys.load_key(source, state_dir, create=create, what="journal")
    except keys.KeyUnavailable as exc:
        raise JournalKeyError(str(exc)) from None


def read_key_file(path: Path) -> bytes:
    """The key in an existing file (``journal verify --key-file``)."""
    try:
        return keys.read_key_file(path, "journal")
    except FileNotFoundError:
        msg = f"journal key file {path}: cannot read: it does not exist"
        raise JournalKeyError(msg) from None
    except keys.KeyUnavailable as exc:
        raise JournalKeyError(str(exc)) from None
