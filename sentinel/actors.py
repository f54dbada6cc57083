"""The process behind an event, for people: user names by uid and the one-line
``process`` field (sentinel.events.ACTOR_FIELDS). Shared by the two ways an actor
is found: the kernel's audit records (files) and the socket's owner (connections).
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Mapping
from typing import Any

from sentinel.i18n import text


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


def _who(uid: int | None, user: str | None, lang: str = "en") -> str:
    word = text(lang, "user")
    return f"{word} {user}, uid {uid}" if user else f"uid {uid}"


def known(program: str | None, pid: int | None, uid: int | None, user: str | None,
          login_uid: int | None = None, login_user: str | None = None,
          lang: str = "en") -> str:
    """``/usr/bin/vim.basic (pid 4242, user root, uid 0, logged in as operator1)``."""
    who = _who(uid, user, lang)
    if login_uid is not None and login_uid != uid:  # su, sudo: the person behind it
        who += f", {text(lang, 'logged in as')} {login_user or login_uid}"
    return f"{program or '?'} (pid {pid}, {who})"


def unknown(why: str, uid: int | None = None, user: str | None = None,
            lang: str = "en") -> str:
    """``not known (<why>)``, with the owner's account when the kernel told it."""
    owner = "" if uid is None else f"; {text(lang, 'socket of')} {_who(uid, user, lang)}"
    return f"{text(lang, 'not known')} ({reason(why, lang)}{owner})"


def reason(why: str, lang: str) -> str:
    """A ``process_unknown`` reason in ``lang``. A reason with a detail after it
    (``attribution unavailable: <what the kernel said>``) has its fixed start
    translated; the detail stays as the system wrote it."""
    whole = text(lang, why)
    if whole != why or lang == "en":
        return whole
    for start in DETAILED:
        if why.startswith(start):
            return text(lang, start) + why[len(start):]
    return why


#: Reasons that carry a detail after a fixed start.
DETAILED = ("attribution unavailable: ", "seen by rescan (")


def line(fields: Mapping[str, Any], lang: str) -> Any:
    """The one-line ``process`` field of an event, written in ``lang`` from the
    event's other actor fields (the field itself, English, is what machines read)."""
    shown = fields.get("process")
    if shown is None or lang == "en":
        return shown
    why = fields.get("process_unknown")
    if why is not None:
        return unknown(str(why), fields.get("process_uid"), fields.get("process_user"), lang)
    return known(fields.get("process_exe") or fields.get("process_command"),
                 fields.get("process_pid"), fields.get("process_uid"),
                 fields.get("process_user"), fields.get("process_login_uid"),
                 fields.get("process_login_user"), lang)
