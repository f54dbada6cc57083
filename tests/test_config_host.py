"""The host sections of the config (``auth``, ``devices``): off unless present, and
their faults reported at their position, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.config_reader import load_config
from sentinel.metrics import Metrics
from sentinel.parts import build_sources, changed_sources, parts_differ
from tests.test_config import run_check, where

HEAD = "host: {name: tally-01, addresses: [10.20.0.10]}\nstate_dir: /var/lib/x\n"

BAD = [
    ("auth files relative", "auth:\n  files: [auth.log]\n", "auth.log",
     "auth.files[0] 'auth.log' must be an absolute path, e.g. /var/log/auth.log"),
    ("auth journal not a boolean", "auth:\n  journal: sometimes\n", "sometimes",
     "auth.journal"),
    ("auth unknown key", "auth:\n  file: [/var/log/auth.log]\n", "file",
     "journal, files"),
    ("devices unknown subsystem", "devices:\n  subsystems: [block, input]\n", "[block",
     "devices.subsystems: 'input' is not a subsystem sentinel reports; valid: block, usb"),
]


@pytest.mark.parametrize(("name", "text", "token", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_host_section_is_reported_at_its_position(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        name: str, text: str, token: str, message: str) -> None:
    code, err = run_check(tmp_path, HEAD + text, capsys)
    assert code == 2
    line, col = where(HEAD + text, token)
    assert f"{tmp_path / 'config.yaml'}:{line}:{col}: " in err, err
    assert message in err, err
    assert "Traceback" not in err



def test_host_sources_are_off_unless_the_config_names_them(tmp_path: Path) -> None:
    c = load_config(_write(tmp_path, ""))
    assert not c.auth.enabled and not c.devices.enabled
    assert [s.name for s in build_sources(c, Metrics())] == []


def test_the_sections_build_their_sources_and_a_change_rebuilds_them(tmp_path: Path) -> None:
    old = load_config(_write(tmp_path, ""))
    new = load_config(_write(tmp_path, "auth: {journal: true, files: [/var/log/auth.log]}\n"
                                       "devices: {}\n"))
    assert new.auth.journal and new.auth.files == (Path("/var/log/auth.log"),)
    assert new.devices.enabled and new.devices.subsystems == ("block", "usb", "scsi")
    assert sorted(s.name for s in build_sources(new, Metrics())) == ["auth", "device"]
    assert parts_differ(old, new)
    # only the sources whose sections changed are rebuilt
    assert changed_sources(old, new) == {"auth", "device"}


NET = "network: {interfaces: [eth0], home_nets: [10.20.0.0/16]}\n"


@pytest.mark.parametrize(("edit", "changed"), [
    ((NET, NET.replace("10.20.0.0/16", "10.30.0.0/16")), {"network"}),
    ((NET, NET + "fim: {paths: [/srv/tally]}\n"), {"fim"}),
    ((NET, NET + "attribution: {connections: true}\n"), {"fim", "network"}),
    ((NET, NET + "lists: {admin_net: [10.20.1.0/24]}\n"), set()),
], ids=["home_nets", "fim paths", "attribution", "a rule list"])
def test_a_reload_rebuilds_only_the_sources_whose_sections_changed(
        tmp_path: Path, edit: tuple[str, str], changed: set[str]) -> None:
    old = load_config(_write(tmp_path, edit[0]))
    new = load_config(_write(tmp_path, edit[1]))
    assert changed_sources(old, new) == changed
    assert parts_differ(old, new) == bool(changed)
    # the host's name is in every event: every source
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(HEAD.replace("tally-01", "tally-02") + edit[0])
    assert changed_sources(old, load_config(renamed)) == {"fim", "network", "auth", "device"}


def _write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(HEAD + text)
    return cfg


def test_check_warns_at_an_auth_log_absent_on_this_host(tmp_path: Path) -> None:
    """A warning at the entry (exit 0): valid, but the source would start blind on it."""
    import subprocess
    import sys

    text = HEAD + f"auth:\n  files: [{tmp_path}/there.log, {tmp_path}/nosuch.log]\n"
    (tmp_path / "there.log").write_text("")
    cfg = _write(tmp_path, text[len(HEAD):])
    done = subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    line, col = where(text, f"{tmp_path}/nosuch.log")
    assert done.stderr.startswith(
        f"{cfg}:{line}:{col}: warning: auth.files[1]: '{tmp_path}/nosuch.log' does not exist"
        " on this host"), done.stderr
    assert "there.log" not in done.stderr
