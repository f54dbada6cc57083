"""Login and privilege records (sshd, sudo, su, login, PAM) into event fields.

The same message texts arrive from two places: a syslog line of /var/log/auth.log
(:func:`parse_syslog_line`) and a record of ``journalctl -o json``
(:func:`parse_journal_record`); both end in :func:`parse_message`.

Hostile input: the user name in an sshd record is whatever the client sent, spaces
and ``from 1.2.3.4 port 22`` included. sshd writes its own ``from ADDR port N``
after the name, so the last such tail is the real one: the patterns take the name
greedily and anchor the address at the end, and an address that does not parse
as an IP drops the record rather than guess. Names keep their bytes' text (control
characters are made visible where people read them, by the alert texts).
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict, deque
from datetime import datetime
from typing import Any

Fields = dict[str, Any]

#: Program names whose records are logins or privilege changes.
SERVICES = frozenset({"sshd", "sshd-session", "sudo", "su", "login"})

_SSHD = re.compile(
    r"^(?P<what>Accepted|Failed) (?P<method>[\w-]+) for (?P<invalid>invalid user )?"
    r"(?P<user>.*) from (?P<ip>[0-9A-Fa-f:.]+) port (?P<port>\d+)(?: ssh2)?(?::.*)?$", re.S)
_SSHD_INVALID = re.compile(
    r"^Invalid user (?P<user>.*) from (?P<ip>[0-9A-Fa-f:.]+)(?: port (?P<port>\d+))?$", re.S)
_SUDO = re.compile(r"^\s*(?P<user>\S+) : (?P<rest>.*)$", re.S)
_SU_OK = re.compile(r"^(?:\+ \S+ )?\(to (?P<target>[^)]*)\) (?P<user>\S+) on (?P<tty>\S+)$")
_SU_FAIL = re.compile(
    r"^(?:FAILED SU|- \S+) \(to (?P<target>[^)]*)\) (?P<user>\S+) on (?P<tty>\S+)$")
# login(1): shadow's "FAILED LOGIN (1) on '/dev/tty1' [from 'h'] FOR 'operator1', reason" and
# util-linux's "FAILED LOGIN 1 FROM tty1 FOR operator1, reason"
_LOGIN_FAIL = re.compile(
    r"^FAILED LOGIN \(?\d+\)?(?: (?:on|FROM) '?(?P<tty>[^' ]+)'?)?(?: from '?(?P<host>[^' ]+)'?)?"
    r" FOR '?(?P<user>[^',]+)'?,")
# a success is PAM's session record: shadow writes ROOT LOGIN beside it for root only
# (which would count twice) and other users' logins only with LOG_OK_LOGINS
_LOGIN_OK = re.compile(
    r"^pam_unix\(login:session\): session opened for user (?P<user>[^(\s]+)(?:\(uid=\d+\))?")
_PAM_FAIL = re.compile(r"^pam_unix\((?P<svc>[\w.-]+):auth\): authentication failure;(?P<kv>.*)$")
# rsyslog folds identical lines: "message repeated 3 times: [ Failed password ...]"
_REPEATED = re.compile(r"^message repeated (?P<n>\d+) times: \[ ?(?P<msg>.*)\]$", re.S)


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _sshd(msg: str) -> tuple[str, Fields] | None:
    if m := _SSHD.match(msg):
        ip = _ip(m["ip"])
        if ip is None:
            return None
        return "auth.login", {
            "user": m["user"], "src_ip": ip, "src_port": int(m["port"]),
            "method": m["method"], "success": m["what"] == "Accepted",
            "invalid_user": m["invalid"] is not None}
    if m := _SSHD_INVALID.match(msg):
        ip = _ip(m["ip"])
        if ip is None:
            return None
        f: Fields = {"user": m["user"], "src_ip": ip, "method": "none", "success": False,
                     "invalid_user": True}
        if m["port"]:
            f["src_port"] = int(m["port"])
        return "auth.login", f
    return None


def _sudo(msg: str) -> tuple[str, Fields] | None:
    m = _SUDO.match(msg)
    if m is None:
        return None
    rest = m["rest"]
    # COMMAND= is last and may itself hold " ; ": split only what comes before it
    head, sep, command = rest.partition("COMMAND=")
    parts = [p.strip() for p in head.split(" ; ") if p.strip()]
    kv = {k: v for k, _, v in (p.partition("=") for p in parts if "=" in p)}
    if "USER" not in kv:
        return None
    refused = [p for p in parts if "=" not in p]  # "3 incorrect password attempts", ...
    f: Fields = {"user": m["user"], "target_user": kv["USER"], "success": not refused,
                 "command": command if sep else None, "tty": kv.get("TTY")}
    if refused:
        f["message"] = refused[0]
    return "auth.privilege", f


def _su(msg: str) -> tuple[str, Fields] | None:
    if m := _SU_FAIL.match(msg):
        ok = False
    elif m := _SU_OK.match(msg):
        ok = True
    else:
        return None
    return "auth.privilege", {"user": m["user"], "target_user": m["target"], "tty": m["tty"],
                              "success": ok}


def _login(msg: str) -> tuple[str, Fields] | None:
    if m := _LOGIN_OK.match(msg):
        return "auth.login", {"user": m["user"], "method": "password", "success": True}
    if m := _LOGIN_FAIL.match(msg):
        return "auth.login", {"user": m["user"], "method": "password", "success": False,
                              "tty": m["tty"], **_host(m["host"])}
    return None


def _host(text: str | None) -> Fields:
    ip = _ip(text) if text else None
    return {"src_ip": ip} if ip else {}


def _pam(service: str, msg: str) -> tuple[str, Fields] | None:
    """A PAM authentication failure of a service with no record of its own."""
    m = _PAM_FAIL.match(msg)
    if m is None or m["svc"] in SERVICES:
        return None  # sshd, sudo, su and login write their own, clearer record
    kv = dict(p.partition("=")[::2] for p in m["kv"].split() if "=" in p)
    f: Fields = {"user": kv.get("user") or kv.get("ruser") or "", "method": "password",
                 "success": False, "service": m["svc"]}
    f.update(_host(kv.get("rhost")))
    return "auth.login", f


def parse_message(program: str, msg: str) -> list[tuple[str, Fields]]:
    """The events of one record of ``program`` (its syslog tag), none when it is not one.

    A folded ``message repeated N times`` record gives N events, each a separate try.
    """
    count = 1
    if m := _REPEATED.match(msg):
        count = min(int(m["n"]), 1000)
        msg = m["msg"].rstrip()
    prog = program.rsplit("/", 1)[-1]
    found: tuple[str, Fields] | None
    if prog in ("sshd", "sshd-session"):
        found = _sshd(msg) or _pam(prog, msg)
        service = "sshd"
    elif prog == "sudo":
        found, service = _sudo(msg), "sudo"
    elif prog == "su":
        found, service = _su(msg), "su"
    elif prog == "login":
        found, service = _login(msg), "login"
    else:
        found, service = _pam(prog, msg), prog
    if found is None:
        return []
    kind, fields = found
    fields.setdefault("service", service)
    return [(kind, dict(fields)) for _ in range(count)]


# "Dec  1 20:22:25 host prog[pid]: msg" (RFC 3164) or rsyslog's RFC 3339 form
_SYSLOG = re.compile(
    r"^(?:(?P<iso>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d))|(?P<bsd>\w{3} [ \d]\d [\d:]{8}))"
    r" (?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[\d+\])?: (?P<msg>.*)$", re.S)


def parse_syslog_line(line: str, now: float) -> list[tuple[str, float, Fields]]:
    """``(kind, time, fields)`` for one auth.log line.

    The RFC 3339 stamp (Debian's rsyslog default) is the record's time. The old
    form carries no year or zone, so such a line is timed when it is read (``now``):
    lines are read as they are written, so the two differ by the tail's delay.
    """
    m = _SYSLOG.match(line.rstrip("\n"))
    if m is None:
        return []
    ts = now
    if m["iso"]:
        try:
            ts = datetime.fromisoformat(m["iso"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            ts = now
    return [(k, ts, f) for k, f in parse_message(m["prog"], m["msg"])]


#: The process names (journald's trusted ``_COMM``) that write each program's records.
_COMMS = {"sshd": {"sshd", "sshd-session", "sshd-auth"}, "sudo": {"sudo"}, "su": {"su"},
          "login": {"login"}}
_COMMS["sshd-session"] = _COMMS["sshd"]


def parse_journal_record(rec: dict[str, Any], now: float) -> list[tuple[str, float, Fields]]:
    """``(kind, time, fields)`` for one ``journalctl -o json`` record.

    Any local user can write a record tagged ``sshd`` (``logger -t sshd``). journald
    adds the writer's process name itself (``_COMM``, which the writer cannot set),
    so a record of sshd, sudo, su or login written by another program is dropped:
    a forged "Accepted ... for root" would otherwise raise alerts at will. auth.log
    keeps no such field; docs/config.md says so.
    """
    prog = rec.get("SYSLOG_IDENTIFIER") or rec.get("_COMM")
    comm = rec.get("_COMM")
    if isinstance(prog, str) and isinstance(comm, str) and prog in _COMMS \
            and comm not in _COMMS[prog]:
        return []
    msg = rec.get("MESSAGE")
    if isinstance(msg, list):
        # journald gives a message that is not valid UTF-8 as a list of byte values
        try:
            msg = bytes(msg).decode("utf-8", "backslashreplace")
        except (TypeError, ValueError):
            return []
    if not isinstance(prog, str) or not isinstance(msg, str):
        return []
    ts = now
    raw = rec.get("__REALTIME_TIMESTAMP")
    if isinstance(raw, str) and raw.isdigit():
        ts = int(raw) / 1e6
    return [(k, ts, f) for k, f in parse_message(prog, msg)]


# -- failures before a success ---------------------------------------------------
#
# Failed logins counted before a success, so a rule can see "a success after a run of failures".
#
# A change rule sees only a value changing and a threshold only a count, not the two
# together; the source knows both. Each ``auth.login`` gets ``failures_before``
# (failed logins for the same user in the :data:`WINDOW` before it, from any
# address) and ``src_failures_before`` (failed logins from the same address, for
# any user: a guesser who found one account). A success then clears both counts,
# so the next success of the same key starts from zero.
#
# Memory is bounded: at most :data:`MAX_KEYS` users and addresses (the least
# recently seen forgotten first), each with at most :data:`MAX_TIMES` times.

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
