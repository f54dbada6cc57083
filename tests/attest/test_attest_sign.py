"""Keys, signatures and the chain: valid ones pass, every kind of tampering fails."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sentinel.attest import (
    GENESIS,
    AttestationError,
    AttestKeyError,
    Store,
    generate_keypair,
    key_id,
    load_file,
    load_folder,
    load_private_key,
    load_public_key,
    sign,
    verify_chain,
)
from sentinel.attest.statement import FORMAT


def _statement(seq: int, prev: str, t: int = 0) -> dict[str, Any]:
    return {"format": FORMAT, "sequence": seq, "previous": prev,
            "time": f"2024-02-14T06:{t:02d}:00.000Z", "host": "tally-01",
            "baseline": {"status": "ok", "merkle_root": "ab" * 32, "leaf_count": 12}}


def _chain(folder: Path, key: Path, n: int) -> list[Path]:
    store = Store(folder)
    private = load_private_key(key)
    return [store.append(lambda s, p, i=i: _statement(s, p, i), private)[0] for i in range(n)]


def test_keygen_writes_a_0600_private_key_and_never_overwrites(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "keys" / "attest.key")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub == tmp_path / "keys" / "attest.pub"
    assert key_id(load_private_key(priv).public_key()) == key_id(load_public_key(pub))
    before = priv.read_bytes()
    with pytest.raises(AttestKeyError, match="never overwritten"):
        generate_keypair(priv)
    assert priv.read_bytes() == before


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    priv, _ = generate_keypair(tmp_path / "attest.key")
    os.chmod(priv, 0o640)
    with pytest.raises(AttestKeyError, match="chmod 600"):
        load_private_key(priv)


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "ec.pub"
    p.write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(AttestKeyError, match="not an Ed25519 key"):
        load_public_key(p)
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(AttestKeyError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")


def test_public_key_as_64_hex_digits_is_accepted(tmp_path: Path) -> None:
    _, pub = generate_keypair(tmp_path / "attest.key")
    raw = load_public_key(pub).public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    (tmp_path / "hex.pub").write_text(raw.hex() + "\n")
    assert key_id(load_public_key(tmp_path / "hex.pub")) == key_id(load_public_key(pub))


def test_a_valid_chain_verifies_back_to_sequence_zero(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "attest.key")
    paths = _chain(tmp_path / "att", priv, 4)
    latest = load_file(paths[-1])[0]
    report = verify_chain(latest, load_folder(tmp_path / "att"), load_public_key(pub))
    assert report.ok, report.problems
    assert [a.sequence for a in report.checked] == [3, 2, 1, 0]
    assert load_file(paths[0])[0].previous == GENESIS
    assert load_file(paths[1])[0].previous == load_file(paths[0])[0].digest()


def test_a_changed_byte_breaks_the_signature(tmp_path: Path) -> None:
    """Change one character of the signed statement in the file: verification fails."""
    priv, pub = generate_keypair(tmp_path / "attest.key")
    (path,) = _chain(tmp_path / "att", priv, 1)
    text = path.read_text()
    assert '"host":"tally-01"' in text
    path.write_text(text.replace('"host":"tally-01"', '"host":"tally-02"'))
    report = verify_chain(load_file(path)[0], [], load_public_key(pub), follow=False)
    assert not report.ok
    assert "signature does not verify" in report.problems[0]


def test_a_changed_signature_byte_fails(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "attest.key")
    (path,) = _chain(tmp_path / "att", priv, 1)
    env = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(env["signature"]))
    sig[10] ^= 0x01
    env["signature"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(env))
    assert not verify_chain(load_file(path)[0], [], load_public_key(pub), follow=False).ok


def test_a_wrong_key_fails(tmp_path: Path) -> None:
    priv, _ = generate_keypair(tmp_path / "a" / "attest.key")
    _, other_pub = generate_keypair(tmp_path / "b" / "attest.key")
    (path,) = _chain(tmp_path / "att", priv, 1)
    report = verify_chain(load_file(path)[0], [], load_public_key(other_pub), follow=False)
    assert not report.ok
    assert "not by the given public key" in report.problems[0]


def test_a_wrong_key_that_claims_the_right_id_fails(tmp_path: Path) -> None:
    """A forger who copies the key id still cannot make the signature verify."""
    _, pub = generate_keypair(tmp_path / "a" / "attest.key")
    forger, _ = generate_keypair(tmp_path / "b" / "attest.key")
    att = sign(_statement(0, GENESIS), load_private_key(forger))
    env = {**att.envelope(), "public_key_id": key_id(load_public_key(pub))}
    (tmp_path / "forged.json").write_text(json.dumps(env))
    report = verify_chain(load_file(tmp_path / "forged.json")[0], [], load_public_key(pub))
    assert not report.ok
    assert "signature does not verify" in report.problems[0]


def test_a_deleted_link_breaks_the_chain(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "attest.key")
    paths = _chain(tmp_path / "att", priv, 4)
    paths[1].unlink()
    report = verify_chain(load_file(paths[-1])[0], load_folder(tmp_path / "att"),
                          load_public_key(pub))
    assert not report.ok
    assert "chain is broken" in report.problems[0]
    assert "sequence 1)" in report.problems[0]


def test_a_replaced_link_breaks_the_chain(tmp_path: Path) -> None:
    """A validly signed but different attestation in place of sequence 1 is caught."""
    priv, pub = generate_keypair(tmp_path / "attest.key")
    paths = _chain(tmp_path / "att", priv, 3)
    prev0 = load_file(paths[0])[0].digest()
    other = sign({**_statement(1, prev0, 1), "host": "elsewhere"}, load_private_key(priv))
    paths[1].write_bytes(other.to_bytes())
    report = verify_chain(load_file(paths[-1])[0], load_folder(tmp_path / "att"),
                          load_public_key(pub))
    assert not report.ok
    assert "chain is broken" in report.problems[0]


def test_a_chain_in_one_jsonl_file_verifies(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "attest.key")
    paths = _chain(tmp_path / "att", priv, 3)
    joined = tmp_path / "published" / "all.jsonl"
    joined.parent.mkdir()
    joined.write_bytes(b"".join(p.read_bytes() for p in paths))
    atts = load_file(joined)
    report = verify_chain(max(atts, key=lambda a: a.sequence), atts, load_public_key(pub))
    assert report.ok, report.problems
    assert len(report.checked) == 3


def test_malformed_attestations_say_what_is_wrong(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    for text, why in (("{", "not JSON"), ("[]", "statement, signature"),
                      ('{"statement":{},"signature":"","public_key_id":""}', "format")):
        p.write_text(text)
        with pytest.raises(AttestationError, match=why):
            load_file(p)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_verifies_the_signature_as_the_readme_shows(tmp_path: Path) -> None:
    """An outsider's independent check: the README's openssl steps accept our signature."""
    priv, pub = generate_keypair(tmp_path / "attest.key")
    (path,) = _chain(tmp_path / "att", priv, 1)
    env = json.loads(path.read_text())
    (tmp_path / "statement.bin").write_bytes(json.dumps(
        env["statement"], sort_keys=True, separators=(",", ":")).encode())
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(env["signature"]))
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
           "-in", str(tmp_path / "statement.bin"), "-sigfile", str(tmp_path / "sig.bin")]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    (tmp_path / "statement.bin").write_bytes(
        (tmp_path / "statement.bin").read_bytes().replace(b"tally-01", b"tally-02"))
    assert subprocess.run(cmd, capture_output=True).returncode != 0
    assert isinstance(load_public_key(pub), Ed25519PublicKey)


def test_a_clock_set_back_is_a_warning_not_a_break(tmp_path: Path) -> None:
    """The hashes fix the order; an earlier time on a later link is reported, not fatal."""
    priv, pub = generate_keypair(tmp_path / "attest.key")
    store = Store(tmp_path / "att")
    private = load_private_key(priv)
    for minute in (10, 5):
        store.append(lambda s, p, m=minute: _statement(s, p, m), private)
    atts = load_folder(tmp_path / "att")
    report = verify_chain(atts[-1], atts, load_public_key(pub))
    assert report.ok, report.problems
    assert len(report.warnings) == 1
    assert "clock was set back" in report.warnings[0]
