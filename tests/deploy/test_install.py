"""deploy/install.sh on a staged root: a second install never nests rules/rules/,
``--upgrade`` replaces the rule pack (backup kept, difference shown), keeps the
config and the secrets, and runs ``sentinel check`` before anything restarts; a
config that fails with the new version brings the old pack back. ``--help`` is
the script's own description, nothing else."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SECRETS, REPO

INSTALL = REPO / "deploy" / "install.sh"
SENTINEL = Path(sys.executable).parent / "sentinel"


def staged(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """install.sh as root on a staged root, the test venv's sentinel doing the check."""
    if os.geteuid() != 0:
        pytest.skip("needs root (install.sh creates files owned by another user)")
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers not installed (Debian package systemd)")
    env = {**os.environ, "SENTINEL_BIN": str(SENTINEL)}
    for k in EXAMPLE_SECRETS:
        env.pop(k, None)  # the check must take them from the staged secrets.env
    return subprocess.run([str(INSTALL), *map(str, args)], capture_output=True, text=True,
                          timeout=180, check=False, env=env)


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A staged root installed once, with the example secrets in its secrets.env and
    the config's rule path where the staged pack is (relative to the config: as is)."""
    r = tmp_path / "root"
    p = staged("--root", r)
    assert p.returncode == 0, p.stdout + p.stderr
    secrets = r / "etc/sentinel/secrets.env"
    secrets.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_SECRETS.items()))
    return r


def test_help_is_the_description_only() -> None:
    p = subprocess.run([str(INSTALL), "--help"], capture_output=True, text=True, timeout=30,
                       check=False)
    assert p.returncode == 0
    assert "--upgrade" in p.stdout
    assert "set -euo pipefail" not in p.stdout
    assert not any(line.startswith("#") for line in p.stdout.splitlines())


def test_a_second_install_does_not_nest_the_rule_pack(root: Path) -> None:
    p = staged("--root", root)
    assert p.returncode == 0, p.stdout + p.stderr
    rules = root / "etc/sentinel/rules"
    assert not (rules / "rules").exists()
    assert same_tree(rules, REPO / "rules")
    assert "install.sh --upgrade" in p.stdout  # says how to get the new pack


def test_upgrade_replaces_the_pack_keeps_config_and_secrets_and_checks(root: Path) -> None:
    etc = root / "etc/sentinel"
    rules = etc / "rules"
    # an older pack: one rule worded differently, one file the new pack dropped
    old = rules / "10-network-access.yaml"
    old.write_text(old.read_text().replace("Tally database (port", "Old database (port"))
    (rules / "05-retired.yaml").write_text("rules: []\n")
    config = etc / "config.yaml"
    config.write_text(config.read_text().replace("name: tally-01", "name: tally-07"))
    kept_config, kept_secrets = config.read_bytes(), (etc / "secrets.env").read_bytes()

    p = staged("--upgrade", "--root", root)
    assert p.returncode == 0, p.stdout + p.stderr
    assert same_tree(rules, REPO / "rules")
    assert config.read_bytes() == kept_config
    assert (etc / "secrets.env").read_bytes() == kept_secrets
    backups = sorted(etc.glob("rules.bak-*"))
    assert len(backups) == 1
    assert "Old database (port" in (backups[0] / "10-network-access.yaml").read_text()
    assert (backups[0] / "05-retired.yaml").exists()
    # the difference is shown, the dropped file named, the check run before the end
    assert "-    title: \"Old database (port" in p.stdout
    assert "+    title: \"Tally database (port" in p.stdout
    assert "05-retired.yaml" in p.stdout.split("not in the new pack")[1]
    assert "sentinel check: the kept config and the new rule pack are valid" in p.stdout
    assert "examples passed" in p.stdout


def test_upgrade_with_a_config_the_new_version_rejects_restores_the_old_pack(
        root: Path) -> None:
    etc = root / "etc/sentinel"
    rules = etc / "rules"
    marker = rules / "10-network-access.yaml"
    marker.write_text(marker.read_text() + "# the pack that was running\n")
    before = marker.read_text()
    config = etc / "config.yaml"
    # a config the new pack cannot run with: a list the pack uses is gone
    config.write_text(config.read_text().replace("  ssh_ports: [22]", ""))

    p = staged("--upgrade", "--root", root)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "unknown list 'ssh_ports'" in p.stderr
    assert "nothing restarted" in p.stdout
    assert marker.read_text() == before
    assert same_tree(etc / "rules.failed", REPO / "rules")
    assert not list(etc.glob("rules.bak-*"))


def test_upgrade_twice_keeps_two_backups_and_one_pack(root: Path) -> None:
    for _ in range(2):
        p = staged("--upgrade", "--root", root)
        assert p.returncode == 0, p.stdout + p.stderr
    etc = root / "etc/sentinel"
    assert len(list(etc.glob("rules.bak-*"))) == 2
    assert not (etc / "rules/rules").exists()
    assert not (etc / "rules.new").exists()
    assert same_tree(etc / "rules", REPO / "rules")


def test_sysusers_and_tmpfiles_comments_name_where_install_puts_them(root: Path) -> None:
    for name, folder in (("sentinel.sysusers", "sysusers.d"), ("sentinel.tmpfiles", "tmpfiles.d")):
        text = (REPO / "deploy/systemd" / name).read_text()
        named = re.search(r"Installed as (\S+)", text)
        assert named is not None, name
        assert named.group(1) == f"/etc/{folder}/sentinel.conf"
        assert (root / named.group(1).lstrip("/")).read_text() == text
