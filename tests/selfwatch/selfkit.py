"""A real `sentinel run` process for the self-protection tests.

The daemon runs as a subprocess with its state under the test's tmp dir, a
real webhook receiver on loopback and, where asked, an attestation key. Alerts
are read back from the journal file the daemon wrote and from the receiver.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.sinks.receiver import Receiver
from tests.support import free_port, wait_for
from tests.test_daemon import NotifySocket

SENTINEL = str(Path(sys.executable).with_name("sentinel"))

RULES = """\
rules:
  - id: tally-binary-tampered
    title: "tally binary changed: {path}"
    severity: critical
    kind: [fim.modified, fim.created, fim.deleted]
    match: {path_tags: tally-binaries}
  - id: tally-binary-attrib
    title: "tally binary attributes changed: {path}"
    severity: high
    kind: fim.attrib
    match: {path_tags: tally-binaries}
"""


class Site:
    """Config, rules, watched folder and state of one test's sentinel."""

    def __init__(self, root: Path, receiver: Receiver, extra: str = "") -> None:
        self.root = root
        self.state = root / "state"
        self.opt = root / "opt"
        self.opt.mkdir(parents=True, exist_ok=True)
        (self.opt / "tally").write_bytes(b"tally v1\n")
        self.rules = root / "rules"
        self.rules.mkdir(exist_ok=True)
        (self.rules / "10-tally.yaml").write_text(RULES)
        self.config = root / "config.yaml"
        self.port = free_port()
        self.receiver = receiver
        self.extra = extra
        self.write_config()
        self.proc: subprocess.Popen[str] | None = None

    def write_config(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra = extra
        self.config.write_text(textwrap.dedent(f"""\
            host: {{name: tally-01, addresses: [10.20.0.10]}}
            state_dir: {self.state}
            fim:
              paths: [{{path: {self.opt}, tags: [tally-binaries]}}]
              rescan_interval: 1h
            rules: {{paths: [{self.rules}], reload_debounce: 200ms}}
            outputs:
              metrics: {{listen: '127.0.0.1:{self.port}'}}
              webhooks:
                - {{name: soc, url: '{self.receiver.url}', format: json, min_severity: info}}
            """) + self.extra)

    @property
    def journal(self) -> Path:
        return self.state / "alerts.jsonl"

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SENTINEL, *argv, "-c", str(self.config)], capture_output=True,
                              text=True, timeout=60)

    def start(self) -> None:
        """Start the daemon; returns once it said READY=1 (sources started)."""
        sock = self.root / f"notify-{os.getpid()}.sock"
        sock.unlink(missing_ok=True)
        notify = NotifySocket(sock)
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = str(sock)
        try:
            self.proc = subprocess.Popen([SENTINEL, "run", "-c", str(self.config)], env=env,
                                         text=True, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.communicate()[1])
            notify.wait_for("READY=1")
        except BaseException:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"sentinel exited: {self.proc.communicate()[1]}") from None
            raise
        finally:
            notify.close()
        wait_for(self._started, timeout=30, what="sentinel's metrics endpoint")

    def _started(self) -> bool:
        import urllib.request

        assert self.proc is not None
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"sentinel exited {self.proc.returncode}: {err}\n{out}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                pass
        except OSError:
            return False
        return True

    def stop(self) -> str:
        """SIGTERM, wait; the daemon's stderr (no traceback allowed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        _, err = self.proc.communicate()
        self.proc = None
        assert "Traceback" not in err, err
        return err

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc.communicate()
        self.proc = None

    def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        """The alerts in the journal (all files), optionally of one rule."""
        out = []
        for f in sorted(self.state.glob("alerts.jsonl*")):
            if f.name.endswith((".head", ".lock", ".new")) or ".partial-" in f.name:
                continue
            for line in f.read_bytes().splitlines():
                if line.strip():
                    out.append(json.loads(line)["alert"])
        return [a for a in out if rule is None or a["rule"] == rule]

    def wait_alert(self, rule: str, timeout: float = 20.0) -> dict[str, Any]:
        return wait_for(lambda: next(iter(self.alerts(rule)), None), timeout=timeout,
                        what=f"a {rule} alert in the journal")

    def delivered(self, rule: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.receiver.delivered() if r.json().get("rule") == rule]
