"""Changes made while the source was stopped, and a baseline tampered with meanwhile."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from tests.sources.fim.fimkit import Site, kinds


def test_changes_while_stopped_are_emitted_offline_before_start_returns(site: Site) -> None:
    site.start()
    os.symlink("bin/tally", site.w / "current")
    site.settled()
    site.stop()
    (site.w / "bin" / "new-tool").write_bytes(b"new")
    (site.w / "conf" / "app.conf").write_text("threshold = 1\n")
    os.chmod(site.w / "bin" / "tally", 0o4755)
    os.unlink(site.w / "readme")
    os.rename(site.w / "conf", site.w / "config")
    subprocess.run(["ln", "-sfn", "config/app.conf", str(site.w / "current")], check=True)

    early = site.start()  # what start() emitted before returning
    assert all(e.fields["offline"] is True for e in early)
    got = sorted((e.kind, e.fields["path"].split("/w/")[1],
                  (e.fields["dest_path"] or "/w/").split("/w/")[1], tuple(e.fields["changed"]))
                 for e in early)
    # conf/app.conf moved with its directory but also changed: a move is claimed
    # only for the same inode with the same content, so it is deleted + created.
    assert got == sorted([
        ("fim.attrib", "bin/tally", "", ("mode",)),
        ("fim.created", "bin/new-tool", "", ()),
        ("fim.modified", "current", "", ("size", "inode", "target")),
        ("fim.moved", "conf", "config", ()),
        ("fim.deleted", "conf/app.conf", "", ()),
        ("fim.created", "config/app.conf", "", ()),
        ("fim.deleted", "readme", "", ()),
    ])
    tally = next(e for e in early if e.fields["path"].endswith("bin/tally"))
    assert tally.fields["is_setuid"] is True and tally.fields["mode_after"] == "4755"
    assert site.metric("sentinel_fim_rescans_total", reason="startup") == 1
    assert site.settled() == early  # nothing more once live


def test_an_unchanged_tree_gives_no_offline_events(site: Site) -> None:
    site.start()
    site.stop()
    assert site.start() == []
    assert site.metric("sentinel_fim_rescans_total", reason="startup") == 1


def test_offline_move_of_an_unchanged_file_is_one_moved(site: Site) -> None:
    site.start()
    site.stop()
    os.rename(site.w / "readme", site.w / "conf" / "readme")
    early = site.start()
    assert [(e.kind, e.fields["path"], e.fields["dest_path"]) for e in early] == [
        ("fim.moved", str(site.w / "readme"), str(site.w / "conf" / "readme"))]


def _tamper_row(db: Path, path: Path, new_sha: str) -> None:
    """Put ``new_sha`` into the record of ``path``, as someone without the key would."""
    conn = sqlite3.connect(db)
    (raw,) = conn.execute("SELECT rec FROM files WHERE path = ?", (os.fsencode(path),)).fetchone()
    old_sha = raw.split(b"\0")[3]
    conn.execute("UPDATE files SET rec = ? WHERE path = ?",
                 (raw.replace(old_sha, new_sha.encode()), os.fsencode(path)))
    conn.commit()
    conn.close()


def _invalid_then_live(site: Site, reason_part: str) -> None:
    db = site.state / "baseline.db"
    before = db.read_bytes()
    early = site.start()
    assert [e.kind for e in early] == ["fim.baseline_invalid"]
    assert early[0].fields["path"] == str(db)
    assert reason_part in early[0].fields["reason"]
    assert site.metric("sentinel_fim_baseline_valid") == 0
    assert site.metric("sentinel_events_total", source="fim", kind="fim.baseline_invalid") == 1
    # still watching live, against what is on disk now
    (site.w / "readme").write_text("changed while untrusted\n")
    assert kinds(site.settled()[1:]) == [("fim.modified", "readme")]
    site.stop()
    assert db.read_bytes() == before  # the evidence is left as found


def test_an_edited_row_is_reported_and_never_trusted(site: Site) -> None:
    site.start()
    site.stop()
    # hide a change: edit the file and its row to match, without the key
    (site.w / "bin" / "tally").write_bytes(b"attacker")
    _tamper_row(site.state / "baseline.db", site.w / "bin" / "tally",
                hashlib.sha256(b"attacker").hexdigest())
    _invalid_then_live(site, "bin/tally was edited outside sentinel")


def test_a_swapped_baseline_file_is_reported(site: Site, tmp_path: Path) -> None:
    site.start()
    site.stop()
    # a baseline made elsewhere (its own key) put in place of ours
    shutil.copy(other_baseline(tmp_path), site.state / "baseline.db")
    _invalid_then_live(site, "does not verify with the configured key")


def other_baseline(tmp_path: Path) -> Path:
    root = tmp_path / "elsewhere"
    root.mkdir()
    s = Site(root)
    s.start()
    s.stop()
    return s.state / "baseline.db"


def test_a_wrong_key_is_reported(site: Site) -> None:
    site.start()
    site.stop()
    key = site.state / "baseline.key"
    key.write_text("0" * 64 + "\n")
    _invalid_then_live(site, "does not verify with the configured key")


def test_a_deleted_row_is_reported(site: Site) -> None:
    site.start()
    site.stop()
    conn = sqlite3.connect(site.state / "baseline.db")
    conn.execute("DELETE FROM files WHERE path = ?", (os.fsencode(site.w / "readme"),))
    conn.commit()
    conn.close()
    _invalid_then_live(site, "do not add up")


def test_a_file_that_is_not_a_database_is_reported(site: Site) -> None:
    site.start()
    site.stop()
    (site.state / "baseline.db").write_bytes(b"not sqlite at all" * 100)
    _invalid_then_live(site, "replaced or corrupted")
