"""The optional ``attest:`` config section: defaults, values, positioned errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.cli import main
from sentinel.config import AttestConfig
from sentinel.config_reader import load_config

HEAD = "host: {name: tally-01, addresses: [10.20.0.10]}\nstate_dir: /var/lib/sentinel\n"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(HEAD + text)
    return p


def test_defaults_without_the_section(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    assert config.attest == AttestConfig()
    assert config.in_state(config.attest.key_file) == Path("/var/lib/sentinel/attest.key")
    assert config.in_state(config.attest.dir) == Path("/var/lib/sentinel/attestations")
    assert config.attest.interval == 3600.0


def test_values_are_read(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "attest:\n  key_file: /etc/sentinel/keys/a.key\n"
                                "  interval: 15m\n  dir: public/att\n"))
    assert config.attest == AttestConfig(Path("/etc/sentinel/keys/a.key"), 900.0,
                                         Path("public/att"))
    assert config.in_state(config.attest.dir) == Path("/var/lib/sentinel/public/att")


@pytest.mark.parametrize(("text", "token", "message"), [
    ("attest:\n  interval: hourly\n", "hourly",
     "attest.interval: bad duration 'hourly'; valid: a number with a unit"),
    ("attest:\n  interval: 0s\n", "0s", "attest.interval: duration must be greater than zero"),
    ("attest:\n  key: x\n", "key", "unknown key 'key' in attest; valid keys: key_file,"
     " interval, dir"),
    ("attest:\n  dir: [a]\n", "[a]", "attest.dir must be a string, got a list"),
    ("attest: yes\n", "yes", "attest must be a mapping, got a boolean"),
])
def test_bad_values_are_positioned_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          text: str, token: str, message: str) -> None:
    path = _write(tmp_path, text)
    full = path.read_text()
    idx = full.index(token, len(HEAD))
    line = full.count("\n", 0, idx) + 1
    col = idx - (full.rfind("\n", 0, idx) + 1) + 1
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:{col}: {message}" in err
