"""`sentinel run` as a real process watching a real tree, for the FIM end-to-end tests.

The daemon journals into ``state/alerts.jsonl`` and posts every alert to a real
HTTP receiver on loopback (tests/sinks/receiver.py). One rule alerts on every
file change under the watched tree, so "every change was alerted" is read
straight from the journal.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sentinel.events import name_bytes
from tests.support import wait_for

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
SECRET = "whsec_" + base64.b64encode(b"fim-end-to-end-test-secret-32by!").decode()

RULES = """\
rules:
  - id: watched-file-changed
    title: "File changed ({kind}): {path} -> {dest_path}"
    severity: high
    kind: [fim.created, fim.modified, fim.deleted, fim.moved, fim.attrib]
    match: {path_tags: w}
"""


class Daemon:
    """One ``sentinel run`` over ``tmp/w`` with its config, state dir and rule file."""

    def __init__(self, tmp: Path, webhook_url: str | None = None,
                 exclude: str = '["*.swp"]', state: Path | None = None,
                 alertmanager_url: str | None = None, baseline: Path | None = None) -> None:
        self.tmp = tmp
        self.w = tmp / "w"
        self.w.mkdir(exist_ok=True)
        self.state = state or tmp / "state"
        self.config = tmp / "config.yaml"
        rules = tmp / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "r.yaml").write_text(RULES)
        hooks = ""
        if webhook_url is not None:
            hooks = ("  webhooks:\n"
                     f"    - {{name: soc, url: '{webhook_url}', secret_env: FIM_TEST_SECRET,\n"
                     "        retry: {initial: 50ms, max: 200ms}}\n")
        if alertmanager_url is not None:
            hooks = (hooks or "  webhooks:\n") + (
                f"    - {{name: am, url: '{alertmanager_url}', format: alertmanager,\n"
                "        retry: {initial: 50ms, max: 200ms}}\n")
        self.config.write_text(
            "host: {name: tally-01, addresses: [10.20.0.10]}\n"
            f"state_dir: {self.state}\n"
            f"rules: {{paths: [{rules}]}}\n"
            "fim:\n"
            f"  paths: [{{path: {self.w}, tags: [w]}}]\n"
            f"  exclude: {exclude}\n"
            f"  key_file: {tmp / 'baseline.key'}\n"
            + (f"  baseline: {baseline}\n" if baseline is not None else "")
            + "outputs:\n"
            "  metrics: {enabled: false}\n" + hooks)
        self.proc: subprocess.Popen[str] | None = None
        self._notify: socket.socket | None = None
        self.runs = 0
        self.log = tmp / "daemon-0.log"

    def start(self) -> None:
        """Start the daemon and wait (bounded) for READY=1: offline changes are emitted."""
        sock_path = self.tmp / f"notify-{time.monotonic_ns()}.sock"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(sock_path))
        self._notify.settimeout(0.2)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "FIM_TEST_SECRET": SECRET}
        env.pop("WATCHDOG_USEC", None)
        self.runs += 1
        self.log = self.tmp / f"daemon-{self.runs}.log"
        with self.log.open("wb") as out:  # the JSON log lines (stdout is not a TTY)
            self.proc = subprocess.Popen([SENTINEL, "run", "-c", str(self.config)], env=env,
                                         text=True, stdout=out, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                msg = f"sentinel run exited {self.proc.returncode}: {err}"
                raise AssertionError(msg)
            try:
                if b"READY=1" in self._notify.recv(4096).split(b"\n"):
                    return
            except TimeoutError:
                continue
        msg = "sentinel run was not ready within 60 s"
        raise AssertionError(msg)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def stop(self) -> int:
        """SIGTERM and wait: the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._close()
        return code

    def _close(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert in the journal so far (complete lines only)."""
        journal = self.state / "alerts.jsonl"
        if not journal.exists():
            return []
        out = []
        for line in journal.read_bytes().split(b"\n"):
            if line.endswith(b"}"):
                out.append(json.loads(line)["alert"])
        return out

    def alerted_paths(self) -> set[bytes]:
        """The raw bytes of every path (and move destination) the journal alerted on."""
        out: set[bytes] = set()
        for a in self.alerts():
            for f in ("path", "dest_path"):
                raw = name_bytes(a["event"], f)
                if raw is not None:
                    out.add(raw)
        return out

    def log_lines(self) -> list[str]:
        """What the current run logged so far (stdout: one JSON object a line)."""
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def wait_alerted(self, paths: set[bytes], timeout: float = 30.0) -> None:
        wait_for(lambda: paths <= self.alerted_paths(), timeout,
                 f"alerts for {len(paths)} paths in the journal")
