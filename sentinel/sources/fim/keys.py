"""The HMAC key that signs the baseline: from an env var, or a file made on first use."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from sentinel.config import KeySource
from sentinel.sources.fim.baseline import BaselineError, make_private_dirs

#: Shorter keys are refused: the key is the baseline's only protection.
MIN_KEY_BYTES = 32


class KeyUnavailable(BaselineError):
    """The configured key cannot be read, or is not fit for use."""


def key_path(source: KeySource, state_dir: Path) -> Path | None:
    """Where the key file lives (relative names resolve against ``state_dir``)."""
    if source.file is None:
        return None
    return source.file if source.file.is_absolute() else state_dir / source.file


def load_key(source: KeySource, state_dir: Path, create: bool) -> bytes:
    """Return the key bytes: the env var's value, or the file's stripped contents.

    With ``create``, a missing key file is generated (64 hex digits, mode 0600,
    missing parent directories made 0700). An existing file must belong to this
    user and not be readable by group or others, as ssh requires of its keys.
    """
    if source.env is not None:
        value = os.environ.get(source.env, "")
        if not value:
            msg = f"fim.key_env: environment variable {source.env} is not set or empty"
            raise KeyUnavailable(msg)
        return _checked(value.strip().encode(), f"environment variable {source.env}")
    path = key_path(source, state_dir)
    if path is None:
        msg = "fim: no key configured; set fim.key_file or fim.key_env"
        raise KeyUnavailable(msg)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            msg = (f"fim key file {path} does not exist; `sentinel baseline init` creates it"
                   " (with the baseline)")
            raise KeyUnavailable(msg) from None
        return _generate(path)
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        msg = f"fim key file {path}: {why}; give a regular file of mode 0600"
        raise KeyUnavailable(msg) from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            msg = f"fim key file {path} is not a regular file"
            raise KeyUnavailable(msg)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            msg = (f"fim key file {path} has mode {stat.S_IMODE(st.st_mode):04o} owned by uid"
                   f" {st.st_uid}; it must be owned by uid {os.geteuid()} with mode 0600"
                   f" (chown {os.geteuid()} {path}; chmod 600 {path})")
            raise KeyUnavailable(msg)
        return _checked(fh.read().strip(), f"key file {path}")


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        msg = (f"fim {where} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
               " (e.g. the output of: openssl rand -hex 32)")
        raise KeyUnavailable(msg)
    return key


def _generate(path: Path) -> bytes:
    make_private_dirs(path.parent)
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        # Another process made it first: use theirs.
        return _reload(path)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def _reload(path: Path) -> bytes:
    return load_key(KeySource(file=path), path.parent, create=False)
