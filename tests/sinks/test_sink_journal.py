"""The journal's keyed hash chain: append, rotate, resume, and verify against tampering."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel import keys
from sentinel.config import KeySource
from sentinel.keys import KeyUnavailable
from sentinel.sinks import verify_journal
from sentinel.sinks.journal import GENESIS, Journal, alert_json, journal_files
from tests.conftest import REPO
from tests.sinks.conftest import make_alert

KEY = b"k" * 32



def load_key(source: KeySource, state_dir: Path, create: bool = True) -> bytes:
    """The journal's key, as the journal sink loads it."""
    return keys.load_key(source, state_dir, create=create, what="journal")

def write(path: Path, n: int, key: bytes = KEY, **kw: object) -> list[bytes]:
    j = Journal(path, key, **kw)  # type: ignore[arg-type]
    bodies = [alert_json(make_alert()) for _ in range(n)]
    for b in bodies:
        j.append(b)
    j.close()
    return bodies


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_intact_chain_verifies_and_keeps_alerts_in_contract_shape(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    bodies = write(p, 5)
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.truncated is None and rep.records == 5
    recs = [json.loads(x) for x in lines(p)]
    assert [r["seq"] for r in recs] == [0, 1, 2, 3, 4]
    assert recs[0]["prev"] == GENESIS
    assert all(recs[i]["prev"] == recs[i - 1]["mac"] for i in range(1, 5))
    assert rep.head == recs[-1]["mac"]
    assert [json.dumps(r["alert"], separators=(",", ":"), ensure_ascii=False).encode()
            for r in recs] == bodies
    assert set(recs[0]["alert"]) >= {"id", "rule", "title", "severity", "time", "host",
                                     "source", "tags", "count", "event"}
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_head_matches_verify(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    j = Journal(p, KEY)
    for _ in range(3):
        j.append(alert_json(make_alert()))
    head = j.head()
    j.close()
    rep = verify_journal(p, KEY)
    assert head == (rep.records, rep.head) == (3, json.loads(lines(p)[-1])["mac"])


def test_rotation_continues_the_chain_across_files(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 30, rotate_size=2000)
    files = journal_files(p)
    assert len(files) > 3
    assert files[0].name == "alerts.jsonl.1" and files[-1] == p
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.records == 30 and rep.files == files
    # a second run appends to the same chain
    write(p, 5, rotate_size=2000)
    assert verify_journal(p, KEY).records == 35


def test_resume_after_restart_continues_seq(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 3)
    write(p, 2)
    assert [json.loads(x)["seq"] for x in lines(p)] == [0, 1, 2, 3, 4]
    assert verify_journal(p, KEY).ok


def test_edit_is_named(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 5)
    ls = lines(p)
    ls[2] = ls[2].replace(b'"severity":"high"', b'"severity":"low"')
    p.write_bytes(b"".join(ls))
    rep = verify_journal(p, KEY)
    assert not rep.ok and (rep.bad_file, rep.bad_line) == (p, 3)
    assert "MAC" in (rep.problem or "") and rep.records == 2


def test_deletion_is_named(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 5)
    ls = lines(p)
    del ls[1]
    p.write_bytes(b"".join(ls))
    rep = verify_journal(p, KEY)
    assert not rep.ok and rep.bad_line == 2 and "seq 1 missing" in (rep.problem or "")


def test_reordering_is_named(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 5)
    ls = lines(p)
    ls[1], ls[3] = ls[3], ls[1]
    p.write_bytes(b"".join(ls))
    rep = verify_journal(p, KEY)
    assert not rep.ok and rep.bad_line == 2


def test_rebuilt_chain_without_the_key_is_caught(tmp_path: Path) -> None:
    """An attacker who rewrites every record with a key of their own is caught at the first."""
    p = tmp_path / "alerts.jsonl"
    write(p, 3)
    write(tmp_path / "forged.jsonl", 3, key=b"x" * 32)
    os.replace(tmp_path / "forged.jsonl", p)
    rep = verify_journal(p, KEY)
    assert not rep.ok and rep.bad_line == 1


def test_deleted_rotated_file_is_caught(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 30, rotate_size=2000)
    files = journal_files(p)
    files[1].unlink()
    rep = verify_journal(p, KEY)
    assert not rep.ok and rep.bad_file == files[2] and rep.bad_line == 1
    assert "missing" in (rep.problem or "")


def test_truncated_last_line_is_reported_not_tampering(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 4)
    data = p.read_bytes()
    p.write_bytes(data[:-40])
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.truncated == (p, 4) and rep.records == 3


def test_truncated_line_in_the_middle_is_tampering(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 4)
    ls = lines(p)
    ls[1] = ls[1][:50] + b"\n"
    p.write_bytes(b"".join(ls))
    rep = verify_journal(p, KEY)
    assert not rep.ok and rep.bad_line == 2 and rep.truncated is None


def test_writer_repairs_a_truncated_tail_and_keeps_the_fragment(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 4)
    data = p.read_bytes()
    p.write_bytes(data[:-40])
    fragment = lines(p)[-1]
    write(p, 2)
    kept = list(tmp_path.glob("alerts.jsonl.partial-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == fragment
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.truncated is None and rep.records == 5
    # the kept-aside fragment is not mistaken for a rotated journal file
    assert journal_files(p) == [p]


def test_writer_completes_a_record_that_only_lacks_its_newline(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 2)
    p.write_bytes(p.read_bytes()[:-1])
    write(p, 1)
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.records == 3


@pytest.mark.parametrize("policy", ["interval", "none"])
def test_other_fsync_policies_write_the_same_chain(tmp_path: Path, policy: str) -> None:
    p = tmp_path / "alerts.jsonl"
    write(p, 10, fsync=policy, fsync_interval=0.05)
    assert verify_journal(p, KEY).records == 10


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    src = KeySource(file=Path("keys/journal.key"))
    key = load_key(src, tmp_path)
    f = tmp_path / "keys" / "journal.key"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    assert load_key(src, tmp_path) == key and len(key) == 64  # hex of 32 random bytes
    with pytest.raises(KeyUnavailable, match="does not exist"):
        load_key(KeySource(file=Path("absent.key")), tmp_path, create=False)


def test_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("J_KEY", "ab" * 32)
    assert load_key(KeySource(env="J_KEY"), tmp_path) == b"ab" * 32
    monkeypatch.setenv("J_KEY", "short")
    with pytest.raises(KeyUnavailable, match="at least 32"):
        load_key(KeySource(env="J_KEY"), tmp_path)


def test_mac_is_hmac_sha256_of_the_line_before_mac(tmp_path: Path) -> None:
    """The documented format, checked independently of the verifier."""
    p = tmp_path / "alerts.jsonl"
    write(p, 1)
    line = lines(p)[0].rstrip(b"\n")
    head, _, _ = line.rpartition(b',"mac":')
    mac = json.loads(line)["mac"]
    assert hmac.new(KEY, head, hashlib.sha256).hexdigest() == mac


# -- the command line ----------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", "journal", "verify", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.fixture
def journal(tmp_path: Path) -> tuple[Path, Path]:
    keyf = tmp_path / "journal.key"
    keyf.write_bytes(KEY + b"\n")
    keyf.chmod(0o600)
    p = tmp_path / "alerts.jsonl"
    write(p, 5)
    return p, keyf


def test_cli_intact(journal: tuple[Path, Path]) -> None:
    p, keyf = journal
    r = cli(str(p), "--key-file", str(keyf))
    assert r.returncode == 0, r.stderr
    assert "intact: 5 records" in r.stdout


def test_cli_tampered_names_file_and_line(journal: tuple[Path, Path]) -> None:
    p, keyf = journal
    ls = lines(p)
    del ls[2]
    p.write_bytes(b"".join(ls))
    r = cli(str(p), "--key-file", str(keyf))
    assert r.returncode == 1
    assert r.stdout.startswith(f"{p}:3: ")


def test_cli_truncated_warns_and_exits_0(journal: tuple[Path, Path]) -> None:
    p, keyf = journal
    p.write_bytes(p.read_bytes()[:-30])
    r = cli(str(p), "--key-file", str(keyf))
    assert r.returncode == 0
    assert r.stdout.startswith(f"warning: {p}:5: ")
    assert "intact: 4 records" in r.stdout


def test_cli_wrong_key_is_tampering(journal: tuple[Path, Path], tmp_path: Path) -> None:
    p, _ = journal
    other = tmp_path / "other.key"
    other.write_bytes(b"z" * 32)
    other.chmod(0o600)
    assert cli(str(p), "--key-file", str(other)).returncode == 1


def test_cli_errors_exit_2_without_traceback(journal: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    p, keyf = journal
    for args in ([str(tmp_path / "nope.jsonl"), "--key-file", str(keyf)],
                 [str(p), "--key-file", str(tmp_path / "nope.key")],
                 [str(p), "-c", str(tmp_path / "nope.yaml")]):
        r = cli(*args)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr and r.stderr.strip(), args


def test_cli_finds_journal_and_key_from_config(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    keyf = tmp_path / "j.key"
    keyf.write_bytes(KEY)
    keyf.chmod(0o600)
    write(state / "alerts.jsonl", 3)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"host: {{name: t, addresses: [10.0.0.1]}}\nstate_dir: {state}\n"
                   f"outputs:\n  journal: {{path: alerts.jsonl, key_file: {keyf}}}\n")
    r = cli("-c", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact: 3 records" in r.stdout


def test_resume_reads_only_the_tail_of_a_long_file(tmp_path: Path) -> None:
    """A journal far longer than the tail window resumes from its true last record."""
    p = tmp_path / "alerts.jsonl"
    write(p, 600, fsync="none")
    assert p.stat().st_size > 4 * 64 * 1024
    p.write_bytes(p.read_bytes()[:-25])
    write(p, 1)
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.records == 600


def test_a_lone_fragment_is_repaired_to_an_empty_chain(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    p.write_bytes(b'{"seq":0,"prev":"00')
    write(p, 2)
    rep = verify_journal(p, KEY)
    assert rep.ok and rep.records == 2


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "journal.key"
    f.write_text("ab" * 32 + "\n")
    f.chmod(0o644)
    with pytest.raises(KeyUnavailable, match=r"mode 0644.*chmod 600"):
        load_key(KeySource(file=f), tmp_path)
