"""The HMAC key that signs the baseline (see :mod:`sentinel.keys`)."""

from __future__ import annotations

from pathlib import Path

from sentinel import keys
from sentinel.config import KeySource
from sentinel.keys import key_path
from sentinel.sources.fim.baseline import BaselineError

__all__ = ["KeyUnavailable", "key_path", "load_key"]


class KeyUnavailable(BaselineError):
    """The configured key cannot be read, or is not fit for use."""


def load_key(source: KeySource, state_dir: Path, create: bool) -> bytes:
    """The baseline key; a missing key file is made when ``create``."""
    try:
        return keys.load_key(source, state_dir, create=create, what="fim")
    except keys.KeyUnavailable as exc:
        hint = ("; `sentinel baseline init` creates it (with the baseline)"
                if "does not exist" in str(exc) else "")
        msg = f"{exc}{hint}"
        raise KeyUnavailable(msg) from None
