"""Builders shared by the delivery tests: configs, alerts, metric reads."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sentinel.alert import Alert
from sentinel.config import (
    Config,
    HostConfig,
    JournalConfig,
    OutputsConfig,
    Secret,
    WebhookConfig,
)
from sentinel.metrics import Metrics
from sentinel.sinks import Delivery, build_delivery

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_n = itertools.count()


def hook(name: str, *urls: str, **kw: Any) -> WebhookConfig:
    """A webhook target with fast retries (tests must not wait on production backoff)."""
    kw.setdefault("retry_initial", 0.02)
    kw.setdefault("retry_max", 0.2)
    kw.setdefault("timeout", 5.0)
    if kw.get("format", "json") == "json":
        kw.setdefault("secret", Secret(SECRET, "test"))
    return WebhookConfig(name=name, urls=tuple(urls), **kw)


def make_config(state_dir: Path, *hooks: WebhookConfig, site: str | None = None,
                region: str | None = None, **journal: Any) -> Config:
    return Config(
        source=state_dir / "config.yaml",
        host=HostConfig("tally-01", (), site, region),
        state_dir=state_dir,
        outputs=OutputsConfig(journal=JournalConfig(**journal), webhooks=tuple(hooks)),
    )


def make_alert(rule: str = "tally-db-unauthorized-access", severity: str = "high",
               tags: tuple[str, ...] = ("network",), **extra: Any) -> Alert:
    n = next(_n)
    return Alert(rule=rule, title=f"Unauthorized database access #{n}", severity=severity,
                 time=time.time(), host="tally-01", source="network", tags=tags,
                 event={"kind": "net.connection", "src_ip": "10.20.5.7", "dst_port": 5432,
                        "n": n}, extra=extra)


def metric(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def deliveries() -> Iterator[list[Delivery]]:
    """Deliveries built in a test are closed at its end, pass or fail."""
    made: list[Delivery] = []
    yield made
    for d in made:
        d.close(5.0)


@pytest.fixture
def start(deliveries: list[Delivery], metrics: Metrics) -> Any:
    def _start(config: Config, m: Metrics | None = None) -> Delivery:
        d = build_delivery(config, m or metrics)
        deliveries.append(d)
        return d
    return _start
