"""The daemon with the host sources: a login record becomes a journaled alert, and an
auth log it cannot read makes it unhealthy until the file appears."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import free_port, wait_for
from tests.test_daemon import SENTINEL, NotifySocket, _healthz, metric, scrape, write_config

RULE = """rules:
  - id: root-login
    title: 'root logged in from {src_ip}'
    severity: high
    kind: auth.login
    match: {user: root, success: true}
"""


def test_a_root_login_in_the_auth_log_is_an_alert_and_a_missing_log_is_unhealthy(
        tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    late = tmp_path / "late.log"  # named in the config, not there yet: blind on it
    cfg = tmp_path / "config.yaml"
    state = tmp_path / "state"
    port = free_port()
    write_config(cfg, state, port, f"auth: {{files: [{log}, {late}]}}\ndevices: {{}}\n")
    (tmp_path / "rules" / "r.yaml").write_text(RULE)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = state / "alerts.jsonl"

    def alerts() -> list[dict[str, object]]:
        if not journal.exists():
            return []
        return [json.loads(x)["alert"] for x in journal.read_text().splitlines()]

    def up(component: str) -> float | None:
        return metric(scrape(port), f'sentinel_component_up{{component="{component}"}}')

    try:
        notify.wait_for("READY=1")
        wait_for(lambda: up(f"auth:{late}") == 0.0, 10, "the missing log reported down")
        assert up(f"auth:{log}") == 1.0 and up("device:uevent") == 1.0
        assert _healthz(port) == 503
        with log.open("a") as f:
            f.write("2026-12-01T20:22:25.1+00:00 tally-01 sshd[9]: Accepted publickey for"
                    " root from 10.20.1.5 port 50022 ssh2: ED25519 SHA256:x\n")
        got = wait_for(alerts, 10, "the alert in the journal")
        assert got[0]["rule"] == "root-login"
        assert got[0]["title"] == "root logged in from 10.20.1.5"
        late.write_text("")
        wait_for(lambda: _healthz(port) == 200, 10, "healthy once the log exists")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        notify.close()
    out, err = proc.communicate()
    assert "Traceback" not in err
    assert '"auth_input_blind"' in out and '"auth_input_reading"' in out
