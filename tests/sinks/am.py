"""The real Alertmanager (Debian package ``prometheus-alertmanager``) on a loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.sinks.receiver import free_port, wait_for

BINARY = "prometheus-alertmanager"
_CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
"""


class Alertmanager:
    """``with Alertmanager(tmp) as am:`` — ``am.url``, ``am.alerts()``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        if shutil.which(BINARY) is None:
            pytest.skip(f"{BINARY} is not installed (Debian package prometheus-alertmanager)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text(_CONFIG)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Alertmanager:
        self.log = (self.dir / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={self.dir / 'alertmanager.yml'}",
             f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=30, what=f"alertmanager on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError("alertmanager exited: "
                                 + (self.dir / "alertmanager.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds as active, from its v2 API."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as r:
            data: list[dict[str, Any]] = json.load(r)
        return data
