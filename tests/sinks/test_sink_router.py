"""Routing: severity floor, tag and rule includes, excludes that win."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sentinel.config_reader import load_config
from sentinel.sinks.router import Route
from tests.conftest import REPO
from tests.sinks.conftest import hook, make_alert


@pytest.mark.parametrize(("severity", "tags", "rule", "taken"), [
    ("critical", (), "r", True),
    ("high", (), "r", True),
    ("medium", (), "r", False),
    ("low", ("network",), "r", True),          # include_tags
    ("info", (), "dns-tunnel", True),           # include_rules
    ("critical", ("lab",), "r", False),         # exclude_tags beats severity
    ("critical", (), "noisy", False),           # exclude_rules beats severity
    ("low", ("network", "lab"), "r", False),    # exclude beats include
])
def test_route(severity: str, tags: tuple[str, ...], rule: str, taken: bool) -> None:
    route = Route(hook("t", "http://127.0.0.1:1/", min_severity="high",
                       include_tags=("network",), include_rules=("dns-tunnel",),
                       exclude_tags=("lab",), exclude_rules=("noisy",)))
    assert route(make_alert(rule=rule, severity=severity, tags=tags)) is taken


def test_example_config_targets(example_secrets: Any, tmp_path: Path) -> None:
    """The two shipped targets: the supervisory body takes high and critical; the
    ministry takes critical plus everything tagged network."""
    config = load_config(REPO / "config.example.yaml")
    routes = {h.name: Route(h) for h in config.outputs.webhooks}
    fim_high = make_alert(severity="high", tags=("tally-config",))
    net_low = make_alert(severity="low", tags=("network",))
    fim_crit = make_alert(severity="critical", tags=("accounts",))
    assert [routes["bawaslu"](a) for a in (fim_high, net_low, fim_crit)] == [True, False, True]
    assert [routes["ministry-csirt"](a) for a in (fim_high, net_low, fim_crit)] == \
        [False, True, True]


def test_delivery_sends_each_alert_only_to_targets_that_take_it(tmp_path: Path,
                                                                start: Any) -> None:
    from tests.sinks.conftest import SECRET, make_config
    from tests.sinks.receiver import Receiver, wait_for

    with Receiver(secret=SECRET) as high, Receiver(secret=SECRET) as net:
        d = start(make_config(tmp_path, hook("high", high.url, min_severity="high"),
                              hook("net", net.url, min_severity="critical",
                                   include_tags=("network",))))
        a_high = make_alert(severity="high", tags=("accounts",))
        a_net = make_alert(severity="low", tags=("network",))
        a_none = make_alert(severity="medium", tags=("accounts",))
        a_both = make_alert(severity="critical", tags=("network",))
        for a in (a_high, a_net, a_none, a_both):
            d.submit(a)
        wait_for(lambda: high.count() >= 2 and net.count() >= 2)
        # everything was journaled, routed or not
        assert d.journal_head()[0] == 4
        d.close(5)
        assert high.ids() == {a_high.id, a_both.id}
        assert net.ids() == {a_net.id, a_both.id}
