"""sentinel's own files are watched without being listed (tag sentinel-self)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.config_reader import load_config
from sentinel.selfwatch.own_files import own_files, package_dir, with_own_files
from tests.conftest import REPO
from tests.selfwatch.selfkit import Site
from tests.sinks.receiver import Receiver
from tests.support import wait_for


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with Receiver() as rx:
        # the pack's rules name the schedule counting
        s = Site(tmp_path, rx, "schedules:\n  counting: [{start: '2024-02-14T13:00:00+07:00',"
                 " end: '2024-02-15T23:59:00+07:00'}]\n")
        shutil.copy(REPO / "rules" / "80-self.yaml", s.rules / "80-self.yaml")
        try:
            yield s
        finally:
            s.kill()


def _paths(site: Site) -> list[dict[str, object]]:
    return [a["event"] for a in site.alerts("sentinel-own-file-changed")]


def test_own_files_are_config_rules_keys_outside_state_and_the_package(tmp_path: Path
                                                                        ) -> None:
    with Receiver() as rx:
        site = Site(tmp_path, rx, "attest: {key_file: /nonexistent-keys/attest.key}\n")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "fim.key").write_text("ab" * 32)
    site.state.mkdir()
    (site.state / "journal.key").write_text("ab" * 32)
    cfg = site.config.read_text().replace(
        "  rescan_interval: 1h\n", f"  rescan_interval: 1h\n  key_file: {keys / 'fim.key'}\n")
    site.config.write_text(cfg)
    config = load_config(site.config)
    paths = {str(p.path): p for p in own_files(config)}
    assert str(site.config) in paths and str(site.rules) in paths
    assert str(keys / "fim.key") in paths
    assert "/nonexistent-keys/attest.key" not in paths  # not made yet: no warning each start
    assert str(site.state / "journal.key") not in paths  # FIM never watches the state dir
    assert str(package_dir() / "daemon.py") in paths
    assert all(p.tags == ("sentinel-self",) for p in paths.values())
    assert not any("__pycache__" in p for p in paths)  # a source tree: see own_files
    added = with_own_files(config)
    assert added.fim.paths[0].path == site.opt  # the operator's entry first, untouched
    assert len(added.fim.paths) == 1 + len(paths)


def test_editing_sentinels_config_is_an_alert_although_nobody_listed_it(site: Site) -> None:
    site.start()
    with site.config.open("a") as fh:
        fh.write("# edited by someone\n")
    event = wait_for(lambda: next(iter(_paths(site)), None), what="the own-file alert")
    assert event["path"] == str(site.config)
    assert event["path_tags"] == ["sentinel-self"]
    assert event["kind"] == "fim.modified"
    wait_for(lambda: site.delivered("sentinel-own-file-changed"), what="the webhook")


def test_a_rule_file_changed_while_sentinel_was_stopped_is_found_at_start(site: Site
                                                                         ) -> None:
    site.start()
    site.stop()
    rules = site.rules / "10-tally.yaml"
    rules.write_text(rules.read_text().replace("severity: high", "severity: low"))
    os.utime(rules)
    site.start()
    wait_for(lambda: [e for e in _paths(site) if e["path"] == str(rules) and e["offline"]],
             what="the offline own-file alert")


@pytest.mark.parametrize(("which", "init"), [("journal", False), ("baseline", False),
                                             ("journal", True)],
                         ids=["journal key", "baseline key", "journal key after baseline init"])
def test_a_key_a_first_start_makes_outside_the_state_dir_is_watched(site: Site, which: str,
                                                                    init: bool) -> None:
    """A first start makes the journal and baseline keys where the config says (outside
    the state dir, as at the reference site) before file watching starts: swapping one
    an hour after a fresh install is an alert at once, not something found at the next
    restart (for the baseline's, as a failed signature), and its making is no alert,
    then or at a restart."""
    keys = site.root / "keys"
    journal, baseline = keys / "journal.key", keys / "baseline.key"
    site.config.write_text(site.config.read_text()
                           .replace("outputs:\n", f"outputs:\n  journal: {{key_file: {journal}}}\n")
                           .replace("  rescan_interval: 1h\n",
                                    f"  rescan_interval: 1h\n  key_file: {baseline}\n"))
    if init:  # the baseline made before the first start, which makes the journal key
        done = site.cli("baseline", "init")
        assert done.returncode == 0, done.stderr
        assert baseline.exists() and not journal.exists()
    site.start()
    assert journal.exists() and baseline.exists()
    site.stop()
    site.start()  # nothing of sentinel's own changed while it was stopped
    key = keys / f"{which}.key"
    key.write_text(secrets.token_hex(32) + "\n")
    event = wait_for(lambda: next((e for e in _paths(site) if e["path"] == str(key)), None),
                     what="the swapped key's alert")
    assert event["kind"] == "fim.modified" and not event.get("offline")
    assert [e["path"] for e in _paths(site)] == [str(key)]
