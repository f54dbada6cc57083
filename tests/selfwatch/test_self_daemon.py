"""The running daemon reports tampering with sentinel itself (issue: the watcher watches itself)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.selfwatch.selfkit import Site
from tests.sinks.receiver import Receiver
from tests.support import wait_for


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with Receiver() as rx:
        s = Site(tmp_path, rx)
        try:
            yield s
        finally:
            s.kill()


def _attestations(site: Site) -> list[dict[str, object]]:
    folder = site.state / "attestations"
    return [json.loads(p.read_bytes())["statement"] for p in sorted(folder.glob("*.json"))]


def test_disabling_a_rule_on_reload_is_an_alert_naming_it_and_the_next_attestation_lists_it(
        site: Site) -> None:
    """`enabled: false` on tally-binary-tampered: a high alert lists it as disabled, with
    the old and new digests; it reaches the webhook and the next attestation records it."""
    assert site.cli("attest", "keygen").returncode == 0
    site.start()
    wait_for(lambda: _attestations(site), what="the start attestation")
    rules = site.rules / "10-tally.yaml"
    rules.write_text(rules.read_text().replace(
        "    severity: critical\n", "    severity: critical\n    enabled: false\n", 1))
    alert = site.wait_alert("sentinel-config-changed")
    ev = alert["event"]
    assert alert["severity"] == "high"
    assert ev["rules_disabled"] == ["tally-binary-tampered"]
    assert ev["rules_removed"] == [] and ev["rules_added"] == []
    assert ev["rules_digest_old"] != ev["rules_digest_new"]
    assert "tally-binary-tampered" in alert["description"]
    wait_for(lambda: site.delivered("sentinel-config-changed"), what="the webhook delivery")
    changed = wait_for(lambda: [s for s in _attestations(site) if s.get("changes")],
                       what="an attestation listing the change")
    change = changed[0]["changes"][0]  # type: ignore[index]
    assert change["rules_disabled"] == ["tally-binary-tampered"]
    assert change["alert_id"] == alert["id"]
    assert changed[0]["reason"] == "reload"


def test_a_config_key_changed_on_reload_is_named_in_the_alert(site: Site) -> None:
    """Widening an allow-list is a config change: the alert names the key, not the value."""
    site.start()
    site.write_config("lists:\n  admin_net: [10.20.1.0/28]\n")
    alert = site.wait_alert("sentinel-config-changed")
    assert alert["event"]["config_keys_changed"] == ["lists.admin_net"]
    assert alert["event"]["config_digest_old"] != alert["event"]["config_digest_new"]


def test_deleting_the_baseline_while_stopped_is_a_critical_alert_at_the_next_start(
        site: Site) -> None:
    """rm baseline.db, plant a setuid file, start: a critical alert says the baseline is
    gone (the planted file is in the new baseline, so nothing else would say it)."""
    site.start()
    site.stop()
    assert site.alerts("sentinel-baseline-missing") == []
    (site.state / "baseline.db").unlink()
    planted = site.opt / "backdoor"
    planted.write_bytes(b"#!/bin/sh\nexec /bin/sh -p\n")
    os.chmod(planted, 0o4755)
    site.start()
    alert = site.wait_alert("sentinel-baseline-missing")
    assert alert["severity"] == "critical"
    assert str(site.state / "baseline.key") in alert["event"]["evidence"]
    wait_for(lambda: site.delivered("sentinel-baseline-missing"), what="the webhook delivery")


def test_a_first_start_with_no_baseline_is_not_an_alert(site: Site) -> None:
    site.start()
    wait_for((site.state / "baseline.db").exists, what="the new baseline")
    site.stop()
    assert site.alerts("sentinel-baseline-missing") == []


def _cut_last_record(journal: Path) -> None:
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]))


def _some_alerts(site: Site, n: int) -> None:
    """n alerts in the journal: edits of the watched binary."""
    for i in range(n):
        (site.opt / "tally").write_bytes(b"tally v%d\n" % (i + 2))
        wait_for(lambda i=i: len(site.alerts("tally-binary-tampered")) > i,
                 what=f"alert {i + 1}")


def test_cutting_records_off_the_journal_end_fails_verify_and_alerts_at_start(
        site: Site) -> None:
    """A journal shortened by its last record still chains, but verify exits 1 and the
    next start raises a critical alert naming how many records are gone."""
    site.start()
    _some_alerts(site, 3)
    site.stop()
    ok = site.cli("journal", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _cut_last_record(site.journal)
    bad = site.cli("journal", "verify")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "cut off the end" in bad.stdout
    site.start()
    alert = site.wait_alert("sentinel-journal-truncated")
    assert alert["severity"] == "critical"
    assert alert["event"]["expected_records"] == 3
    assert alert["event"]["found_records"] == 2


def test_cutting_the_journal_and_deleting_its_marker_is_caught_by_the_attestation(
        site: Site) -> None:
    """Without the head marker, the latest attestation's signed journal head still shows
    the cut (to verify and to the daemon)."""
    assert site.cli("attest", "keygen").returncode == 0
    site.start()
    _some_alerts(site, 2)
    site.stop()
    assert site.cli("attest").returncode == 0  # signs the journal head as it stands
    _cut_last_record(site.journal)
    (site.state / "alerts.jsonl.head").unlink()
    bad = site.cli("journal", "verify")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "attestation" in bad.stdout
    site.start()
    alert = site.wait_alert("sentinel-journal-truncated")
    assert alert["event"]["witness"].startswith("attestation")


def test_a_forged_head_marker_fails_verify(site: Site) -> None:
    site.start()
    _some_alerts(site, 1)
    site.stop()
    marker = site.state / "alerts.jsonl.head"
    data = json.loads(marker.read_bytes())
    marker.write_text(json.dumps({**data, "records": 0}))
    bad = site.cli("journal", "verify")
    assert bad.returncode == 1
    assert "forged" in bad.stdout


def test_a_crash_right_after_alerts_is_not_taken_for_a_cut_journal(site: Site) -> None:
    """SIGKILL may leave the signed head behind the journal (it is renewed at most once a
    second): that is more records than signed, never a cut."""
    site.start()
    _some_alerts(site, 3)
    site.kill()
    ok = site.cli("journal", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    site.start()
    (site.opt / "tally").write_bytes(b"tally after the crash\n")
    wait_for(lambda: len(site.alerts("tally-binary-tampered")) >= 4, what="a fresh alert")
    site.stop()
    assert site.alerts("sentinel-journal-truncated") == []
    assert site.cli("journal", "verify").returncode == 0
