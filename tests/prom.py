"""Test helpers around the real Prometheus tools (Debian package ``prometheus``).

Reusable from any test: ``from tests.prom import check_metrics, Prometheus``.

- :func:`check_metrics` runs ``promtool check metrics`` on exposition text.
- :class:`Prometheus` runs the real ``prometheus`` binary on a loopback port,
  scraping the targets given (optionally evaluating rule files), and answers
  PromQL through its HTTP API.
- :func:`populate` moves every metric of a :class:`~sentinel.metrics.Metrics`,
  whatever families it has by then, so an exposition shows every series shape.
- :func:`exposed_names` and :func:`metric_names` list the metric names of an
  exposition and of a PromQL expression, so rules and dashboards can be checked
  against what sentinel really exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram, Info, Summary

from sentinel.metrics import Metrics
from tests.support import free_port, wait_for

PROMTOOL = "promtool"
PROMETHEUS = "prometheus"


def need(binary: str) -> str:
    """The binary's path, or skip the test (CI installs it, so CI never skips)."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (Debian package prometheus)")
    return path




def check_metrics(exposition: str | bytes) -> tuple[int, str]:
    """``promtool check metrics`` on the text; (exit code, everything it printed)."""
    data = exposition.encode() if isinstance(exposition, str) else exposition
    p = subprocess.run([need(PROMTOOL), "check", "metrics"], input=data,
                       capture_output=True, timeout=60, check=False)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 30.0,
               interval: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    return wait_for(probe, timeout, what, interval)


class Prometheus:
    """A real Prometheus scraping ``targets`` every second, in ``workdir``.

    ``scrape`` is merged into the scrape job (``scheme``, ``tls_config``,
    ``basic_auth``…), so TLS and auth are exercised by the real client.
    """

    def __init__(self, workdir: Path, targets: list[str],
                 scrape: dict[str, Any] | None = None,
                 rule_files: list[Path] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        job: dict[str, Any] = {"job_name": "sentinel", "static_configs": [{"targets": targets}]}
        job.update(scrape or {})
        self.config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [job],
            "rule_files": [str(p) for p in rule_files or []],
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        binary = need(PROMETHEUS)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.config))
        self._log = (self.workdir / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_until("Prometheus to be ready", self._ready)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._log.close()

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            log = (self.workdir / "prometheus.log").read_text(errors="replace")
            pytest.fail(f"prometheus exited with {self._proc.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET an ``/api/v1`` endpoint; the ``data`` of a successful answer."""
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{q}", timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query: each series' labels (as text) -> value."""
        out = {}
        for s in self.api("query", query=expr)["result"]:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s["metric"].items()))
            out[labels] = float(s["value"][1])
        return out

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts of the loaded rules, pending or firing."""
        return list(self.api("alerts")["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with health and last error."""
        return list(self.api("targets")["activeTargets"])

    def wait_for(self, expr: str, predicate: Callable[[dict[str, float]], bool],
                 timeout: float = 30.0) -> dict[str, float]:
        """Poll ``expr`` until ``predicate`` holds on its result."""

        def probe() -> dict[str, float] | None:
            r = self.query(expr)
            return r if predicate(r) else None

        try:
            return dict(wait_until(f"{expr} to satisfy the condition", probe, timeout))
        except pytest.fail.Exception:
            pytest.fail(f"{expr} never matched; targets: {self.targets()}")


#: label values that look like what the daemon sets (bounded: no addresses, no paths)
LABEL_VALUES = {
    "source": "network", "kind": "net.connection", "rule": "tally-db-unauthorized-access",
    "severity": "critical", "iface": "eth0", "reason": "overflow", "result": "success",
    "target": "bawaslu", "component": "fim", "stage": "read",
}


def populate(m: Metrics, step: float = 1.0) -> None:
    """Move every metric family of ``m`` once (counters up, gauges up, one observation)."""
    for attr, metric in vars(m).items():
        if not isinstance(metric, Counter | Gauge | Histogram | Info | Summary):
            continue
        names = getattr(metric, "_labelnames", ())
        if attr == "build_info" or (names and isinstance(metric, Info)):
            continue
        child: Any = metric.labels(*[LABEL_VALUES.get(n, "x") for n in names]) if names else metric
        if isinstance(metric, Info):
            child.info({"host": "tally-01", "site": "kota-contoh", "region": "jawa-barat"})
        elif isinstance(metric, Histogram | Summary):
            child.observe(0.00002 * step)
        else:
            child.inc(step)


def exposed_names(exposition: str) -> set[str]:
    """Every series name a text exposition declares or carries.

    Read from the ``# TYPE`` lines too, so a labelled family with no series yet
    (a fresh registry) still counts; histograms and summaries add their
    ``_bucket``/``_sum``/``_count`` series.
    """
    names = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition,
                                              re.MULTILINE)}
    for m in re.finditer(r"^# TYPE (\S+) (\w+)", exposition, re.MULTILINE):
        name, kind = m.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {f"{name}_sum", f"{name}_count"}
    return names


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                 "and", "or", "unless", "bool", "inf", "nan", "atan2", "e"}


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana ``$variables`` allowed).

    Not a full parser: strings, label matchers, ranges, grouping clauses and
    function names are removed; every identifier left is a metric name.
    """
    s = re.sub(r"\$\{[^}]*\}|\$\w+", "1", promql)              # Grafana variables
    s = re.sub(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""", "", s)  # strings
    s = re.sub(r"\{[^}]*\}", "", s)                           # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)                           # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    s = re.sub(r"(?<![\w:.])\d+(\.\d+)?(e[+-]?\d+)?[smhdwy]?\b", " ", s)  # numbers, durations
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in _PROMQL_WORDS:
            continue  # a function call or a keyword
        names.add(m.group(0))
    return names
