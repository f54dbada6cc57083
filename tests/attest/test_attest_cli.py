"""The attest commands end to end, as an operator and an outside witness use them."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from attest_helpers import make_files

from sentinel.attest import load_tree
from sentinel.cli import main
from sentinel.config import Config


@pytest.fixture
def server(site: Callable[..., Config], tmp_path: Path) -> Config:
    """A configured site with real files under watch, a baseline and an attestation key."""
    make_files(tmp_path / "opt", 7)
    config = site()
    assert main(["baseline", "init", "-c", str(config.source)]) == 0
    assert main(["attest", "keygen", "-c", str(config.source)]) == 0
    return config


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _attest(config: Config, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = _run(capsys, "attest", "-c", str(config.source))
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


def test_keygen_makes_a_private_key_only_its_owner_reads(server: Config,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    key = server.in_state(server.attest.key_file)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_suffix(".pub").exists()
    code, _, err = _run(capsys, "attest", "keygen", "-c", str(server.source))
    assert code == 2
    assert "never overwritten" in err


def test_keygen_into_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "attest", "keygen", "--out-dir", str(tmp_path / "keys"))
    assert code == 0
    assert stat.S_IMODE((tmp_path / "keys" / "attest.key").stat().st_mode) == 0o600
    assert "key id:" in out


def test_attest_without_a_key_says_how_to_make_one(site: Callable[..., Config],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = site()
    code, _, err = _run(capsys, "attest", "-c", str(config.source))
    assert code == 2
    assert "sentinel attest keygen" in err


def test_a_witness_verifies_the_chain_and_a_file(server: Config, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Attest twice, publish; the witness checks the chain and its copy of one binary."""
    _attest(server, capsys)
    latest = _attest(server, capsys)
    pub = server.in_state(server.attest.key_file).with_suffix(".pub")
    code, out, _ = _run(capsys, "attest", "verify", str(latest), "--pubkey", str(pub))
    assert code == 0, out
    assert "VALID: sequence 1, chain of 2 back to sequence 0" in out
    code, out, _ = _run(capsys, "attest", "verify", str(latest.parent), "--pubkey", str(pub))
    assert code == 0, out
    assert "VALID: sequence 1, chain of 2 back to sequence 0" in out

    target = tmp_path / "opt" / "bin-0003"
    proof = tmp_path / "witness" / "proof.json"
    proof.parent.mkdir()
    # -c before the action counts too
    code, _, err = _run(capsys, "attest", "-c", str(server.source), "prove", str(target),
                        "-o", str(proof))
    assert code == 0, err
    copy = tmp_path / "witness" / "tally-copy"
    shutil.copy(target, copy)
    args = ["attest", "verify-proof", str(proof), "--attestation", str(latest),
            "--pubkey", str(pub)]
    code, out, _ = _run(capsys, *args, "--file", str(copy))
    assert code == 0, out
    assert "local copy: OK" in out
    assert out.strip().endswith("VALID")

    copy.write_bytes(copy.read_bytes() + b"\x90")
    code, out, _ = _run(capsys, *args, "--file", str(copy))
    assert code == 1
    assert "local copy: FAILED" in out

    forged = json.loads(proof.read_text())
    forged["leaf"]["sha256"] = "00" * 32
    proof.write_text(json.dumps(forged))
    code, out, _ = _run(capsys, *args)
    assert code == 1
    assert "inclusion: FAILED" in out


def test_verify_fails_on_a_changed_byte_and_a_wrong_key(server: Config, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    path = _attest(server, capsys)
    pub = server.in_state(server.attest.key_file).with_suffix(".pub")
    assert main(["attest", "keygen", "--out-dir", str(tmp_path / "other")]) == 0
    code, out, _ = _run(capsys, "attest", "verify", str(path), "--pubkey",
                        str(tmp_path / "other" / "attest.pub"))
    assert code == 1
    assert "INVALID" in out
    text = path.read_text()
    n = len(load_tree(server))
    assert f'"leaf_count":{n}' in text
    path.write_text(text.replace(f'"leaf_count":{n}', f'"leaf_count":{n + 1}'))
    code, out, _ = _run(capsys, "attest", "verify", str(path), "--pubkey", str(pub))
    assert code == 1
    assert "signature does not verify" in out


def test_a_missing_middle_link_fails_the_chain(server: Config,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    first = _attest(server, capsys)
    _attest(server, capsys)
    latest = _attest(server, capsys)
    pub = server.in_state(server.attest.key_file).with_suffix(".pub")
    os.unlink(first.with_name("attestation-00000001.json"))
    code, out, _ = _run(capsys, "attest", "verify", str(latest), "--pubkey", str(pub))
    assert code == 1
    assert "chain is broken" in out
    code, out, _ = _run(capsys, "attest", "verify", str(latest), "--pubkey", str(pub),
                        "--no-chain")
    assert code == 0


def test_prove_refuses_a_baseline_that_changed_since(server: Config, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _attest(server, capsys)
    (tmp_path / "opt" / "new-file").write_text("added after the attestation\n")
    assert main(["baseline", "init", "-c", str(server.source)]) == 0
    code, _, err = _run(capsys, "attest", "prove", str(tmp_path / "opt" / "bin-0001"),
                        "-c", str(server.source))
    assert code == 2
    assert "the baseline changed since" in err


def test_prove_names_a_file_not_in_the_baseline(server: Config, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _attest(server, capsys)
    code, _, err = _run(capsys, "attest", "prove", str(tmp_path / "elsewhere"),
                        "-c", str(server.source))
    assert code == 2
    assert "is not in the baseline" in err


def test_attest_to_stdout_is_only_the_attestation(server: Config,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "attest", "-c", str(server.source), "-o", "-")
    assert code == 0
    env = json.loads(out)
    assert env["statement"]["reason"] == "manual"
    # 7 files and their folder, and sentinel's own files (config, rules, package)
    tree = load_tree(server)
    assert env["statement"]["baseline"]["leaf_count"] == len(tree)
    assert str(server.source) in {leaf["path"] for leaf in tree.leaves}


def test_unreadable_inputs_are_errors_not_tracebacks(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "attest", "verify", str(tmp_path / "none.json"), "--pubkey",
                        str(tmp_path / "none.pub"))
    assert code == 2
    assert "cannot read" in err
    (tmp_path / "p.json").write_text("{}")
    assert main(["attest", "keygen", "--out-dir", str(tmp_path)]) == 0
    (tmp_path / "a.json").write_text("{}")
    code, _, err = _run(capsys, "attest", "verify-proof", str(tmp_path / "p.json"),
                        "--attestation", str(tmp_path / "a.json"), "--pubkey",
                        str(tmp_path / "attest.pub"))
    assert code == 2
    assert "an attestation is an object" in err


def test_attest_refuses_a_private_key_that_is_a_symbolic_link(
        server: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The attestation key gets the checks of every key: a link to it is refused."""
    key = server.in_state(server.attest.key_file)
    real = tmp_path / "elsewhere" / "attest.key"
    real.parent.mkdir()
    key.rename(real)
    key.symlink_to(real)
    code, _, err = _run(capsys, "attest", "-c", str(server.source))
    assert code == 2
    assert "symbolic link" in err
