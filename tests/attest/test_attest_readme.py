"""The README's outsider steps, run as written: an outsider without sentinel can check
a signature (openssl), the chain (sha256 of the file) and a proof (the script)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from attest_helpers import make_files

from sentinel.cli import main
from sentinel.config import Config

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Public attestations: how an outsider verifies"


def _blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def published(site: Callable[..., Config], tmp_path: Path) -> Path:
    """What the commission publishes for a witness: key, two attestations, one proof."""
    make_files(tmp_path / "opt", 5)
    config = site()
    for argv in (["baseline", "init"], ["attest", "keygen"], ["attest"], ["attest"]):
        assert main([*argv, "-c", str(config.source)]) == 0
    out = tmp_path / "public"
    shutil.copytree(config.in_state(config.attest.dir), out / "attestations")
    shutil.copy(config.in_state(config.attest.key_file).with_suffix(".pub"), out / "attest.pub")
    assert main(["attest", "prove", str(tmp_path / "opt" / "bin-0002"), "-c",
                 str(config.source), "-o", str(out / "tally.proof.json")]) == 0
    shutil.copy(tmp_path / "opt" / "bin-0002", out / "tally")
    return out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_readme_openssl_steps_verify_a_signature(published: Path) -> None:
    (script,) = [b for b in _blocks("sh") if "openssl pkeyutl" in b]
    (published / "attestations" / "attestation-00000001.json").rename(
        published / "attestations" / "attestation-00000042.json")
    done = subprocess.run(["bash", "-euc", script], cwd=published, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Signature Verified Successfully" in done.stdout


def test_readme_chain_rule_holds(published: Path) -> None:
    """``previous`` is the sha256 of the previous file without its final newline."""
    first = (published / "attestations" / "attestation-00000000.json").read_bytes()
    second = (published / "attestations" / "attestation-00000001.json").read_text()
    assert first.endswith(b"\n") and first.count(b"\n") == 1
    assert hashlib.sha256(first[:-1]).hexdigest() in second


def test_readme_proof_script_accepts_the_file_and_rejects_a_changed_copy(
        published: Path) -> None:
    (script,) = [b for b in _blocks("python") if "check-proof.py" in b]
    (published / "check-proof.py").write_text(script)
    argv = [sys.executable, "check-proof.py", "tally.proof.json",
            "attestations/attestation-00000001.json", "tally"]
    done = subprocess.run(argv, cwd=published, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"
    (published / "tally").write_bytes(b"a trojaned tally\n")
    done = subprocess.run(argv, cwd=published, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "differs" in done.stderr
