"""Pieces of the self-protection that need no daemon: the reload diff, the signed head."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sentinel.config_reader import load_config
from sentinel.engine import load_rules
from sentinel.events import parse_time
from sentinel.selfwatch.journal_head import HeadMarker, check_head
from sentinel.selfwatch.reload_diff import (
    addresses_alert,
    learned_only,
    reload_alert,
    reload_summary,
)
from sentinel.sinks.journal import Journal

RULE = """\
  - id: {id}
    title: t
    severity: high
    kind: net.connection
    match: {{dst_port: {port}}}
"""


def _load(tmp: Path, rules: str, extra: str = "") -> tuple[object, object]:
    (tmp / "rules.yaml").write_text("rules:\n" + rules)
    cfg = tmp / "config.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        host: {{name: tally-01, addresses: [10.20.0.10]}}
        state_dir: {tmp / 'state'}
        rules: {{paths: [rules.yaml]}}
        schedules:
          counting: [{{start: "2024-02-14T13:00:00+07:00", end: "2024-02-15T23:59:00+07:00"}}]
        """) + extra)
    config = load_config(cfg)
    return config, load_rules(config)


def test_reload_diff_names_added_removed_disabled_and_changed_rules(tmp_path: Path) -> None:
    old_cfg, old = _load(tmp_path, RULE.format(id="a", port=1) + RULE.format(id="b", port=2)
                         + RULE.format(id="c", port=3))
    new_cfg, new = _load(tmp_path, RULE.format(id="a", port=9)
                         + RULE.format(id="b", port=2) + "    enabled: false\n"
                         + RULE.format(id="d", port=4),
                         "lists:\n  admin_net: [10.20.1.0/28]\n")
    s = reload_summary(old_cfg, new_cfg, old, new, "x", "y")  # type: ignore[arg-type]
    assert s is not None
    assert (s["rules_added"], s["rules_removed"], s["rules_disabled"], s["rules_changed"]) == \
        (["d"], ["c"], ["b"], ["a"])
    assert s["config_keys_changed"] == ["lists.admin_net"]


def test_an_unchanged_reload_is_no_alert(tmp_path: Path) -> None:
    cfg, rules = _load(tmp_path, RULE.format(id="a", port=1))
    cfg2, rules2 = _load(tmp_path, RULE.format(id="a", port=1))
    assert reload_summary(cfg, cfg2, rules, rules2, "x", "x") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("when", "severity"), [
    ("2024-02-14T14:00:00+07:00", "critical"),  # inside counting
    ("2024-02-20T14:00:00+07:00", "high"),
])
def test_a_reload_change_is_critical_during_a_named_schedule(
        tmp_path: Path, when: str, severity: str) -> None:
    old_cfg, old = _load(tmp_path, RULE.format(id="a", port=1))
    new_cfg, new = _load(tmp_path, RULE.format(id="a", port=1) + "    enabled: false\n")
    s = reload_summary(old_cfg, new_cfg, old, new, "x", "y")  # type: ignore[arg-type]
    assert s is not None
    alert = reload_alert(new_cfg, s, parse_time(when))  # type: ignore[arg-type]
    assert alert.severity == severity
    assert alert.event["schedules_open"] == (["counting"] if severity == "critical" else [])


def test_a_reload_for_the_servers_own_addresses_alone_is_information_not_a_change(
        tmp_path: Path) -> None:
    """The kernel's addresses changed (an IPv6 address autoconfigured after boot, a new
    gateway), the config file and the rules did not: an info alert naming what came and
    went, not sentinel-config-changed, which would be critical during counting at every
    boot. The same reload with an edited file stays a config change."""
    import ipaddress

    from sentinel.hostinfo import with_own_addresses
    lists = "lists:\n  tally_server: [10.20.0.10]\n  gateway_ip: [10.20.0.1]\n"
    cfg, rules = _load(tmp_path, RULE.format(id="a", port=1), lists)
    ll, gw = ipaddress.ip_address("fe80::10"), ipaddress.ip_address("fe80::1")
    old, _ = with_own_addresses(cfg, [ll], [])  # type: ignore[arg-type]
    new, _ = with_own_addresses(cfg, [ll, ipaddress.ip_address("2001:db8:20::10")], [gw])  # type: ignore[arg-type]
    s = reload_summary(old, new, rules, rules, "x", "x")  # type: ignore[arg-type]
    assert s is not None and learned_only(s)
    alert = addresses_alert(old, new, s, parse_time("2024-02-14T14:00:00+07:00"))
    assert (alert.rule, alert.severity) == ("sentinel-addresses-changed", "info")
    assert alert.event["addresses_added"] == ["2001:db8:20::10"]
    assert alert.event["gateways_added"] == ["fe80::1"]
    assert alert.event["addresses_removed"] == [] == alert.event["gateways_removed"]
    assert "addresses added: 2001:db8:20::10; gateways added: fe80::1" in alert.title
    assert "alamat bertambah: 2001:db8:20::10" in alert.extra["i18n"]["id"]["title"]
    # the file changed too (its digest): an operator's change, whatever its keys
    s = reload_summary(old, new, rules, rules, "x", "y")  # type: ignore[arg-type]
    assert s is not None and not learned_only(s)
    # or another key changed beside the learned ones
    other, _ = _load(tmp_path, RULE.format(id="a", port=1),
                     lists + "  admin_net: [10.20.1.0/28]\n")
    other, _ = with_own_addresses(other, [ll], [gw])  # type: ignore[arg-type]
    s = reload_summary(old, other, rules, rules, "x", "x")  # type: ignore[arg-type]
    assert s is not None and not learned_only(s)


def test_the_head_marker_is_signed_and_a_cut_or_a_rewrite_is_found(tmp_path: Path) -> None:
    key = b"k" * 32
    journal = tmp_path / "alerts.jsonl"
    j = Journal(journal, key)
    for i in range(3):
        j.append(json.dumps({"n": i}).encode())
    head = j.head()
    j.close()
    marker = HeadMarker(journal, key)
    marker.update(head)
    assert marker.read() == head
    assert check_head(journal, key, head, head, "marker") is None
    cut = check_head(journal, key, (2, "ab" * 32), head, "marker")
    assert cut is not None and (cut.expected_records, cut.found_records) == (3, 2)
    # as many records again, but record 2 is another one: cut and rewritten
    rewritten = check_head(journal, key, (4, "cd" * 32), (3, "ef" * 32), "marker")
    assert rewritten is not None
    # a marker written with another key is refused
    HeadMarker(journal, b"x" * 32).update((1, "00" * 32))
    with pytest.raises(ValueError, match="forged or foreign"):
        marker.read()


def test_alertmanager_targets_heartbeat_by_default_and_0s_switches_it_off(tmp_path: Path
                                                                          ) -> None:
    from sentinel.selfwatch.heartbeat import DEFAULT_AM, Heartbeat

    hooks = textwrap.dedent("""\
        outputs:
          webhooks:
            - {name: am, format: alertmanager, url: 'http://127.0.0.1:9'}
            - {name: am-off, format: alertmanager, url: 'http://127.0.0.1:9', heartbeat: 0s}
            - {name: soc, format: json, url: 'http://127.0.0.1:9'}
            - {name: soc-beat, format: json, url: 'http://127.0.0.1:9', heartbeat: 15m}
        """)
    config, _ = _load(tmp_path, RULE.format(id="a", port=1), hooks)
    assert Heartbeat(config).every == {"am": DEFAULT_AM, "soc-beat": 900.0}  # type: ignore[arg-type]
