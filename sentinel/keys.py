"""Every key sentinel holds: HMAC keys (the baseline's, the journal's) and the file checks.

HMAC keys come from an env var, or a file made on first use.

A key is the text of its file or env var, stripped: a generated one is 64 hex
digits (32 random bytes), mode 0600, in a folder made 0700. A key file must be
a regular file (never a symbolic link) that neither group nor others can read,
owned by the user running sentinel or by root, as ssh requires of its keys.
The attestation private key (:mod:`sentinel.attest.keys`) is read through the
same :func:`read_private_file`, so all keys get the same checks.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from sentinel.config import KeySource

#: Shorter keys are refused: a key is all that protects what it signs.
MIN_KEY_BYTES = 32


class KeyUnavailable(Exception):
    """A key cannot be read or made, or is not fit for use; the message says which key
    (fim, journal, attestation) and how to fix it. The one exception of every key."""


#: What to do about a key file that does not exist, by key.
_MAKE_IT = {"fim": "; `sentinel baseline init` creates it (with the baseline)"}


def key_path(source: KeySource, state_dir: Path) -> Path | None:
    """Where the key file lives (a relative name is under ``state_dir``); None for env."""
    if source.file is None:
        return None
    return source.file if source.file.is_absolute() else state_dir / source.file


def load_key(source: KeySource, state_dir: Path, *, create: bool, what: str) -> bytes:
    """The key bytes ``source`` names; ``what`` (``fim``, ``journal``) goes in errors.

    With ``create``, a missing key file is generated. Verification passes
    ``create=False``: a verifier that invented a key would only report tampering.
    """
    if source.env is not None:
        value = os.environ.get(source.env, "")
        if not value:
            msg = f"{what}.key_env: environment variable {source.env} is not set or empty"
            raise KeyUnavailable(msg)
        return _checked(value.strip().encode(), f"{what} key in environment variable {source.env}")
    path = key_path(source, state_dir)
    if path is None:
        msg = f"{what}: no key configured; set {what}.key_file or {what}.key_env"
        raise KeyUnavailable(msg)
    try:
        return read_key_file(path, what)
    except FileNotFoundError:
        if not create:
            msg = f"{what} key file {path} does not exist{_MAKE_IT.get(what, '')}"
            raise KeyUnavailable(msg) from None
        return _generate(path, what)


def read_key_file(path: Path, what: str = "the") -> bytes:
    """An existing key file's key; FileNotFoundError when there is none."""
    return _checked(read_private_file(path, what).strip(), f"{what} key file {path}")


def read_existing_key(path: Path, what: str) -> bytes:
    """The key in a file named on the command line (``journal verify --key-file``)."""
    try:
        return read_key_file(path, what)
    except FileNotFoundError:
        msg = f"{what} key file {path}: cannot read: it does not exist"
        raise KeyUnavailable(msg) from None


def read_private_file(path: Path, what: str) -> bytes:
    """The bytes of a private key file, after the checks every key gets.

    The one loader for every key sentinel holds (baseline, journal,
    attestation): a regular file, not a symbolic link (a link lets whoever
    controls its folder swap the key), readable by its owner only, owned by
    the user running sentinel or by root. FileNotFoundError when absent;
    KeyUnavailable, saying which key and how to fix it, otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot read: {exc.strerror}"
        msg = f"{what} key file {path} {why}; give a regular file of mode 0600"
        raise KeyUnavailable(msg) from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            msg = f"{what} key file {path} is not a regular file; give a regular file of mode 0600"
            raise KeyUnavailable(msg)
        euid = os.geteuid()
        if st.st_mode & 0o077 or (st.st_uid not in (euid, 0) and euid != 0):
            msg = (f"{what} key file {path} has mode {stat.S_IMODE(st.st_mode):04o} owned by uid"
                   f" {st.st_uid}; it must be owned by uid {euid} with mode 0600"
                   f" (chown {euid} {path}; chmod 600 {path})")
            raise KeyUnavailable(msg)
        return fh.read()


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700 (whatever the umask)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        msg = (f"{where} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
               " (e.g. the output of: openssl rand -hex 32)")
        raise KeyUnavailable(msg)
    return key


def _generate(path: Path, what: str) -> bytes:
    try:
        make_private_dirs(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        return read_key_file(path, what)  # another process made it first: use theirs
    except OSError as exc:
        msg = f"{what} key file {path}: cannot create: {exc.strerror}"
        raise KeyUnavailable(msg) from exc
    key = secrets.token_hex(32).encode()
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key
