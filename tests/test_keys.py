"""Every key sentinel holds goes through one loader with the same checks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.attest import AttestKeyError, generate_keypair, load_private_key
from sentinel.config import KeySource
from sentinel.keys import KeyUnavailable, load_key


def _hmac_key(path: Path) -> Path:
    path.write_bytes(b"ab" * 32 + b"\n")
    os.chmod(path, 0o600)
    return path


def _attest(path: Path) -> None:
    load_private_key(path)


def _journal(path: Path) -> None:
    load_key(KeySource(file=path), path.parent, create=False, what="journal")


def _fim(path: Path) -> None:
    load_key(KeySource(file=path), path.parent, create=False, what="fim")


LOADERS: dict[str, tuple[Callable[[Path], None], type[Exception]]] = {
    "attestation": (_attest, AttestKeyError),
    "journal": (_journal, KeyUnavailable),
    "fim": (_fim, KeyUnavailable),
}


def _real_key(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "attestation":
        return generate_keypair(folder / "attest.key")[0]
    return _hmac_key(folder / f"{kind}.key")


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_key_that_is_a_symbolic_link_is_refused_for_every_key(kind: str, tmp_path: Path
                                                                 ) -> None:
    load, error = LOADERS[kind]
    real = _real_key(kind, tmp_path / "elsewhere")
    load(real)  # the file itself is fine
    link = tmp_path / "state" / real.name
    link.parent.mkdir()
    link.symlink_to(real)
    with pytest.raises(error, match="symbolic link"):
        load(link)


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_key_others_can_read_is_refused_for_every_key(kind: str, tmp_path: Path) -> None:
    load, error = LOADERS[kind]
    real = _real_key(kind, tmp_path)
    os.chmod(real, 0o640)
    with pytest.raises(error, match="mode 0640"):
        load(real)


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_key_that_is_not_a_regular_file_is_refused_for_every_key(kind: str, tmp_path: Path
                                                                     ) -> None:
    load, error = LOADERS[kind]
    fifo = tmp_path / f"{kind}.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(error, match="not a regular file"):
        load(fifo)  # and does not hang on the FIFO
