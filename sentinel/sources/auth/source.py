"""The auth source: login and privilege events from auth.log files and the journal.

Each input is one component of the source's health (``auth:<path>``,
``auth:journal``): down while a file cannot be opened or journalctl is not
running, so /healthz and ``sentinel_component_up`` say the source is blind
there, with one log line per change of state. journalctl is started again
after a pause, from the cursor of the last record read, so a restart loses no
record the journal still holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import IO, Any

from sentinel import logs
from sentinel.config import Config
from sentinel.events import KIND_FIELDS, Event
from sentinel.metrics import Metrics
from sentinel.pipeline import Emit
from sentinel.sources.auth.parse import Fields, Streaks, parse_journal_record, parse_syslog_line
from sentinel.sources.auth.tail import FileTail

_log = logs.get("auth")

POLL = 0.25
RESTART_PAUSE = 2.0
#: auth (4) and authpriv (10): sshd, sudo, su, login and PAM write there
JOURNAL_ARGS = ("-o", "json", "--follow", "--no-pager", "--lines=0",
                "SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10")
_JOURNAL_CMD = ("journalctl", *JOURNAL_ARGS)


class AuthSource:
    name = "auth"

    def __init__(self, config: Config, metrics: Metrics,
                 journal_cmd: tuple[str, ...] = _JOURNAL_CMD) -> None:
        self.host = config.host.name
        self.metrics = metrics
        self.tails = [FileTail(p) for p in config.auth.files]
        self.journal = config.auth.journal
        self.journal_cmd = journal_cmd
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._emit: Emit | None = None
        self._up: dict[str, bool] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._cursor: str | None = None
        self.restart_pause = RESTART_PAUSE
        # one for both inputs: a site reading the journal and auth.log sees each record
        # twice, which doubles counts; docs/config.md says to choose one
        self.streaks = Streaks()
        self._streak_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------

    def start(self, emit: Emit) -> None:
        self._emit = emit
        if self.tails:
            for t in self.tails:
                t.poll()  # opens at the end: what is already there is not news
                self._set_up(f"auth:{os.fsdecode(t.path)}", t.open)
            self._spawn("sentinel-auth-files", self._files_loop)
        if self.journal:
            self._set_up("auth:journal", False, quiet=True)
            self._spawn("sentinel-auth-journal", self._journal_loop)

    def _spawn(self, name: str, target: Any) -> None:
        th = threading.Thread(target=target, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        for th in self._threads:
            th.join(5.0)
        for t in self.tails:
            t.close()

    def alive(self) -> bool:
        return bool(self._threads) and all(th.is_alive() for th in self._threads)

    def components(self) -> dict[str, bool]:
        return dict(self._up)

    def _set_up(self, name: str, up: bool, quiet: bool = False) -> None:
        if self._up.get(name) == up:
            return
        self._up[name] = up
        if up:
            _log.info("auth_input_reading", input=name)
        elif not quiet:
            # blind on this input: loud, once per change
            _log.error("auth_input_blind", input=name)

    # -- events --------------------------------------------------------------

    def _send(self, found: list[tuple[str, float, Fields]]) -> None:
        assert self._emit is not None
        for kind, ts, fields in found:
            if kind == "auth.login":
                with self._streak_lock:  # the files and the journal threads share it
                    self.streaks.note(fields, ts)
            # every field of the kind is present, None when the record does not say
            full = {k: fields.get(k) for k in KIND_FIELDS[kind]}
            self._emit(Event(kind, ts, self.host, "auth", full))
            self.metrics.events.labels("auth", kind).inc()

    def _files_loop(self) -> None:
        while not self._stop.is_set():
            for t in self.tails:
                for raw in t.poll():
                    line = raw.decode("utf-8", "backslashreplace")
                    self._send(parse_syslog_line(line, time.time()))
                self._set_up(f"auth:{os.fsdecode(t.path)}", t.open)
            self._stop.wait(POLL)

    def _journal_loop(self) -> None:
        while not self._stop.is_set():
            cmd = list(self.journal_cmd)
            if self._cursor is not None:
                # again after an exit: from the last record read, not from the end
                cmd = [a for a in cmd if a != "--lines=0"]
                cmd.append(f"--after-cursor={self._cursor}")
            try:
                # a session of its own: a signal to sentinel's process group (Ctrl-C
                # in a terminal) must not end the reader before sentinel stops it,
                # or every stop would look like a reader that died
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL,
                                              start_new_session=True)
            except OSError as exc:
                _log.error("auth_journal_failed", detail=str(exc))
                self._set_up("auth:journal", False)
                self._stop.wait(self.restart_pause)
                continue
            self._set_up("auth:journal", True)
            assert self._proc.stdout is not None
            self._read_journal(self._proc.stdout)
            rc = self._proc.wait()
            if self._stop.is_set():
                return
            _log.error("auth_journal_exited", returncode=rc)
            self._set_up("auth:journal", False)
            self._stop.wait(self.restart_pause)

    def _read_journal(self, out: IO[bytes]) -> None:
        for raw in out:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            cursor = rec.get("__CURSOR")
            if isinstance(cursor, str):
                self._cursor = cursor
            self._send(parse_journal_record(rec, time.time()))


def build_auth_source(config: Config, metrics: Metrics) -> AuthSource | None:
    return AuthSource(config, metrics) if config.auth.enabled else None
