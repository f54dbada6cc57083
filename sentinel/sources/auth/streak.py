"""Failed logins counted before a success, so a rule can see "a success after a run of failures".

A change rule sees only a value changing and a threshold only a count, not the two
together; the source knows both. Each ``auth.login`` gets ``failures_before``
(failed logins for the same user in the :data:`WINDOW` before it, from any
address) and ``src_failures_before`` (failed logins from the same address, for
any user: a guesser who found one account). A success then clears both counts,
so the next success of the same key starts from zero.

Memory is bounded: at most :data:`MAX_KEYS` users and addresses (the least
recently seen forgotten first), each with at most :data:`MAX_TIMES` times.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

WINDOW = 15 * 60.0
MAX_KEYS = 10_000
MAX_TIMES = 1000


class _Counts:
    def __init__(self) -> None:
        self.times: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, key: str, now: float) -> int:
        q = self.times.get(key)
        if q is None:
            return 0
        while q and q[0] < now - WINDOW:
            q.popleft()
        return len(q)

    def add(self, key: str, now: float) -> None:
        q = self.times.get(key)
        if q is None:
            q = self.times[key] = deque(maxlen=MAX_TIMES)
            while len(self.times) > MAX_KEYS:
                self.times.popitem(last=False)
        self.times.move_to_end(key)
        q.append(now)

    def clear(self, key: str) -> None:
        self.times.pop(key, None)


class Streaks:
    """Adds ``failures_before`` and ``src_failures_before`` to login fields."""

    def __init__(self) -> None:
        self.users = _Counts()
        self.sources = _Counts()

    def note(self, fields: dict[str, Any], ts: float) -> None:
        user = fields.get("user")
        src = fields.get("src_ip")
        user_key = f"{fields.get('service')}\0{user}" if isinstance(user, str) else None
        fields["failures_before"] = self.users.count(user_key, ts) if user_key else 0
        fields["src_failures_before"] = self.sources.count(src, ts) if src else 0
        if fields.get("success"):
            if user_key:
                self.users.clear(user_key)
            if src:
                self.sources.clear(src)
            return
        if user_key:
            self.users.add(user_key, ts)
        if src:
            self.sources.add(src, ts)
