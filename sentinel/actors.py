"""The process behind an event, for people: user names by uid and the one-line
``process`` field (sentinel.events.ACTOR_FIELDS). Shared by the two ways an actor
is found: the kernel's audit records (files) and the socket's owner (connections).
"""

from __future__ import annotations

import pwd
import time


class Users:
    """uid → user name, cached (a name that changes later keeps its first lookup;
    a uid without an account is None, looked up again after ``retry`` seconds)."""

    def __init__(self, retry: float = 60.0) -> None:
        self._names: dict[int, tuple[str | None, float]] = {}
        self._retry = retry

    def name(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        now = time.monotonic()
        hit = self._names.get(uid)
        if hit is not None and (hit[0] is not None or now - hit[1] < self._retry):
            return hit[0]
        try:
            name: str | None = pwd.getpwuid(uid).pw_name
        except (KeyError, OverflowError):
            name = None
        if len(self._names) > 10_000:
            self._names.clear()
        self._names[uid] = (name, now)
        return name


def _who(uid: int | None, user: str | None) -> str:
    return f"user {user}, uid {uid}" if user else f"uid {uid}"


def known(program: str | None, pid: int | None, uid: int | None, user: str | None,
          login_uid: int | None = None, login_user: str | None = None) -> str:
    """``/usr/bin/vim.basic (pid 4242, user root, uid 0, logged in as operator1)``."""
    who = _who(uid, user)
    if login_uid is not None and login_uid != uid:  # su, sudo: the person behind it
        who += f", logged in as {login_user or login_uid}"
    return f"{program or '?'} (pid {pid}, {who})"


def unknown(why: str, uid: int | None = None, user: str | None = None) -> str:
    """``not known (<why>)``, with the owner's account when the kernel told it."""
    owner = "" if uid is None else f"; socket of {_who(uid, user)}"
    return f"not known ({why}{owner})"
