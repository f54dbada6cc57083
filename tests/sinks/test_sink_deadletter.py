"""Dead letters: a receiver that refuses every alert (here, a wrong secret answered
with 401) until it is fixed; the operator sees them and sends them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sentinel.config_reader import load_config
from tests.sinks.conftest import SECRET, make_alert
from tests.sinks.receiver import Answer, Receiver, wait_for


def sentinel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "HOOK_SECRET": SECRET})


def test_refused_alerts_are_listed_and_sent_again_after_the_fix(
        tmp_path: Path, start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    fixed = {"yes": False}

    def respond(n: int, req: Any) -> Answer:
        return Answer(200) if fixed["yes"] else Answer(401)
    with Receiver(secret=SECRET, respond=respond) as r:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"host: {{name: tally-01, addresses: [10.20.0.10]}}\nstate_dir: {tmp_path}\n"
            f"outputs:\n  webhooks:\n    - name: soc\n      url: {r.url}\n"
            f"      secret_env: HOOK_SECRET\n      retry: {{initial: 20ms, max: 200ms}}\n")
        d = start(load_config(cfg))
        alerts = [make_alert() for _ in range(3)]
        for a in alerts:
            d.submit(a)
        wait_for(lambda: r.count() >= 3, what="three refused attempts")

        def status() -> dict[str, Any]:
            out = sentinel("delivery", "status", "-c", str(cfg), "--format", "json")
            row = dict(json.loads(out.stdout)["targets"][0])
            # exit 1 while dead letters exist, 0 once none are left
            assert out.returncode == (1 if row["dead"] else 0), out.stderr
            return row

        wait_for(lambda: len(status()["dead"]) == 3, what="three dead letters")
        assert {x["id"] for x in status()["dead"]} == {a.id for a in alerts}
        assert all(x["status"] == 401 for x in status()["dead"])
        text = sentinel("delivery", "status", "-c", str(cfg))
        assert "soc: 0 pending, 3 dead" in text.stdout

        fixed["yes"] = True  # the receiver's secret is put right
        bad = sentinel("delivery", "retry", "nosuch", "-c", str(cfg))
        assert bad.returncode == 2 and "no target nosuch" in bad.stderr
        one = sentinel("delivery", "retry", "soc", "--id", alerts[0].id, "-c", str(cfg))
        assert one.returncode == 0 and "soc: 1 dead letter(s) queued again" in one.stdout
        wait_for(lambda: alerts[0].id in r.delivered_ids(), what="the re-sent alert")
        rest = sentinel("delivery", "retry", "-c", str(cfg))
        assert "soc: 2 dead letter(s) queued again" in rest.stdout
        wait_for(lambda: r.delivered_ids() >= {a.id for a in alerts}, what="all three")
        assert all(q.signature_ok for q in r.delivered())
        assert status()["dead"] == [] and status()["pending"] == 0
