"""Live changes on real files under real inotify: each one reported exactly once."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sentinel.events import KIND_FIELDS
from tests.sources.fim.fimkit import Site, kinds, wait_for


def one(site: Site) -> dict[str, object]:
    """The single event the last action caused (fails if there is not exactly one)."""
    events = site.settled()
    assert len(events) == 1, kinds(events)
    e = events[0]
    assert set(e.fields) == set(KIND_FIELDS[e.kind])
    assert (e.host, e.source, e.fields["offline"]) == ("tally-01", "fim", False)
    return {"kind": e.kind, **e.fields}


def test_first_run_records_the_baseline_and_emits_nothing(site: Site) -> None:
    assert site.start() == []
    assert (site.state / "baseline.db").exists()
    assert site.metric("sentinel_fim_baseline_valid") == 1
    assert site.metric("sentinel_fim_watched_files") == 6  # w, bin, tally, conf, app.conf, readme
    assert site.settled() == []


def test_create_reports_one_created_with_hash_and_tags(site: Site) -> None:
    site.start()
    f = site.w / "bin" / "helper"
    with f.open("wb") as fh:
        for _ in range(20):
            fh.write(b"x" * 1000)
            fh.flush()
    e = one(site)
    assert e["kind"] == "fim.created"
    assert e["path"] == str(f)
    assert e["path_tags"] == ["tally-binaries"]  # the most specific entry wins
    assert e["changed"] == []
    assert e["sha256_before"] is None
    assert e["sha256_after"] == hashlib.sha256(b"x" * 20000).hexdigest()
    assert e["size_after"] == 20000
    assert e["type_after"] == "file"
    assert site.metric("sentinel_events_total", source="fim", kind="fim.created") == 2


def test_many_writes_then_close_is_one_modified(site: Site) -> None:
    """Content is re-hashed on close-write, not on every write."""
    site.start()
    f = site.w / "conf" / "app.conf"
    before = f.read_bytes()
    with f.open("ab") as fh:
        for i in range(50):
            fh.write(f"line {i}\n".encode())
            fh.flush()
            os.fsync(fh.fileno())
    e = one(site)
    assert e["kind"] == "fim.modified"
    assert e["changed"] == ["content", "size"]
    assert e["sha256_before"] == hashlib.sha256(before).hexdigest()
    assert e["sha256_after"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert (e["size_before"], e["size_after"]) == (len(before), f.stat().st_size)
    assert e["path_tags"] == ["tally-site"]


def test_chmod_is_one_attrib_with_octal_modes(site: Site) -> None:
    site.start()
    os.chmod(site.w / "readme", 0o600)
    e = one(site)
    assert (e["kind"], e["changed"]) == ("fim.attrib", ["mode"])
    assert (e["mode_before"], e["mode_after"]) == ("0644", "0600")
    assert e["sha256_before"] == e["sha256_after"] is not None


def test_chown_is_one_attrib_with_owner_and_group(site: Site) -> None:
    site.start()
    os.chown(site.w / "readme", 4321, 8765)
    e = one(site)
    assert (e["kind"], e["changed"]) == ("fim.attrib", ["uid", "gid"])
    assert (e["uid_before"], e["uid_after"], e["gid_before"], e["gid_after"]) == (
        os.getuid(), 4321, os.getgid(), 8765)


def test_setuid_bit_is_reported(site: Site) -> None:
    site.start()
    os.chmod(site.w / "bin" / "tally", 0o4755)
    e = one(site)
    assert (e["kind"], e["changed"], e["mode_after"]) == ("fim.attrib", ["mode"], "4755")
    assert e["is_setuid"] is True and e["is_executable"] is True and e["is_setgid"] is False


def test_new_executable_is_one_created_flagged_executable(site: Site) -> None:
    site.start()
    p = site.w / "bin" / "dropper"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\x7fELF fake")
    os.fchmod(fd, 0o755)
    os.close(fd)
    e = one(site)
    assert (e["kind"], e["path"], e["mode_after"]) == ("fim.created", str(p), "0755")
    assert e["is_executable"] is True and e["is_setuid"] is False


def test_delete_is_one_deleted(site: Site) -> None:
    site.start()
    os.unlink(site.w / "readme")
    e = one(site)
    assert (e["kind"], e["path"]) == ("fim.deleted", str(site.w / "readme"))
    assert e["sha256_after"] is None and e["sha256_before"] is not None
    assert e["type_before"] == "file" and e["type_after"] is None


def test_move_within_the_tree_is_one_moved(site: Site) -> None:
    site.start()
    os.rename(site.w / "readme", site.w / "conf" / "readme.old")
    e = one(site)
    assert (e["kind"], e["path"], e["dest_path"]) == (
        "fim.moved", str(site.w / "readme"), str(site.w / "conf" / "readme.old"))
    assert e["changed"] == []
    site.stop()
    assert site.start() == []  # the baseline followed the move


def test_moving_a_directory_moves_everything_in_it(site: Site) -> None:
    site.start()
    os.rename(site.w / "conf", site.w / "conf2")
    events = site.settled()
    assert sorted((e.kind, e.fields["path"], e.fields["dest_path"]) for e in events) == [
        ("fim.moved", str(site.w / "conf"), str(site.w / "conf2")),
        ("fim.moved", str(site.w / "conf" / "app.conf"), str(site.w / "conf2" / "app.conf")),
    ]
    # events inside the moved directory now carry the new path
    (site.w / "conf2" / "app.conf").write_text("threshold = 6\n")
    assert kinds(site.settled()[2:]) == [("fim.modified", "conf2/app.conf")]


def test_move_out_of_the_tree_is_deleted_and_in_is_created(site: Site) -> None:
    site.start()
    outside = site.root / "outside"
    outside.mkdir()
    os.rename(site.w / "readme", outside / "readme")
    (outside / "incoming").write_text("in\n")
    os.rename(outside / "incoming", site.w / "incoming")
    assert kinds(site.settled()) == [("fim.deleted", "readme"), ("fim.created", "incoming")]


def test_atomic_save_is_one_modified_of_the_real_path(site: Site) -> None:
    """An editor's save: write a temp file beside the real one, rename it over."""
    site.start()
    real = site.w / "conf" / "app.conf"
    old_inode = real.stat().st_ino
    tmp = site.w / "conf" / ".app.conf.tmp123"
    tmp.write_text("threshold = 9\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, real)
    e = one(site)
    assert (e["kind"], e["path"], e["dest_path"]) == ("fim.modified", str(real), None)
    assert e["changed"] == ["content", "inode"]
    assert real.stat().st_ino != old_inode


def test_symlink_retarget_is_one_modified_naming_both_targets(site: Site) -> None:
    site.start()
    link = site.w / "current"
    os.symlink("bin/tally", link)
    assert kinds(site.settled()) == [("fim.created", "current")]
    site.events.clear()
    subprocess.run(["ln", "-sfn", "conf/app.conf", str(link)], check=True)
    e = one(site)
    assert e["kind"] == "fim.modified" and "target" in e["changed"]
    assert (e["link_target_before"], e["link_target_after"]) == ("bin/tally", "conf/app.conf")
    assert e["type_after"] == "symlink" and e["sha256_after"] is None
    assert os.readlink(link) == "conf/app.conf"  # recorded, never followed


def test_new_nested_directories_and_their_files_each_created_once(site: Site) -> None:
    site.start()
    deep = site.w / "a" / "b" / "c"
    os.makedirs(deep)
    for d in (site.w / "a", site.w / "a" / "b", deep):
        (d / "f.txt").write_text(str(d))
    got = kinds(site.settled())
    assert sorted(got) == sorted([
        ("fim.created", "a"), ("fim.created", "a/b"), ("fim.created", "a/b/c"),
        ("fim.created", "a/f.txt"), ("fim.created", "a/b/f.txt"),
        ("fim.created", "a/b/c/f.txt"),
    ])
    assert got[0] == ("fim.created", "a")  # a directory before what it holds


def test_a_tree_built_elsewhere_and_moved_in_is_found_whole(site: Site) -> None:
    """Files that existed before any watch on their directory are found by its scan."""
    site.start()
    built = site.root / "staging" / "pkg"
    (built / "lib").mkdir(parents=True)
    (built / "lib" / "x.so").write_bytes(b"so")
    (built / "run").write_bytes(b"run")
    shutil.move(str(built), str(site.w / "pkg"))
    assert sorted(kinds(site.settled())) == [
        ("fim.created", "pkg"), ("fim.created", "pkg/lib"), ("fim.created", "pkg/lib/x.so"),
        ("fim.created", "pkg/run")]
    (site.w / "pkg" / "lib" / "x.so").write_bytes(b"so2")  # and now watched
    assert kinds(site.settled()[4:]) == [("fim.modified", "pkg/lib/x.so")]


def test_excluded_names_are_not_reported(site: Site) -> None:
    site.start()
    (site.w / "conf" / "app.conf.swp").write_text("swap")
    (site.w / "readme~").write_text("backup")
    assert site.settled() == []


def test_sentinel_does_not_report_its_own_state(site: Site, tmp_path: Path) -> None:
    """A state_dir inside the watched tree is skipped (no feedback loop)."""
    site.state = site.w / "state"
    site.start()
    (site.w / "readme").write_text("changed\n")
    assert kinds(site.settled()) == [("fim.modified", "readme")]


def test_a_reported_change_is_not_reported_again_after_restart(site: Site) -> None:
    site.start()
    (site.w / "readme").write_text("v2\n")
    os.chmod(site.w / "bin" / "tally", 0o700)
    assert sorted(kinds(site.settled())) == [("fim.attrib", "bin/tally"),
                                             ("fim.modified", "readme")]
    site.stop()
    site.events.clear()
    assert site.start() == []
    assert site.settled() == []


def test_a_directory_moved_out_is_deleted_and_no_longer_watched(site: Site) -> None:
    site.start()
    outside = site.root / "outside"
    outside.mkdir()
    os.rename(site.w / "conf", outside / "conf")
    assert sorted(kinds(site.settled())) == [("fim.deleted", "conf"),
                                             ("fim.deleted", "conf/app.conf")]
    site.events.clear()
    (outside / "conf" / "app.conf").write_text("edited where nobody watches\n")
    (site.w / "conf").mkdir()  # a new directory of the same name is watched afresh
    (site.w / "conf" / "new.conf").write_text("x\n")
    assert sorted(kinds(site.settled())) == [("fim.created", "conf"),
                                             ("fim.created", "conf/new.conf")]


def test_a_writer_that_never_closes_is_checked_after_a_quiet_spell(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """No IN_CLOSE_WRITE comes while the file stays open; the quiet timer (shortened
    here from 2 s) checks it anyway, once."""
    from sentinel.sources.fim import holds

    monkeypatch.setattr(holds, "QUIET", 0.3)
    site.start()
    path = site.w / "conf" / "app.conf"
    with path.open("ab") as fh:
        fh.write(b"appended by a long-lived writer\n")
        fh.flush()
        e = wait_for(lambda: [x for x in site.changes() if x.kind == "fim.modified"],
                     what="the quiet-spell check")[0]
        assert e.fields["sha256_after"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(site.settled()) == 1
    # closing without writing more changes nothing: no second event
    assert len(site.settled()) == 1


def test_renaming_a_known_file_over_another_is_modified_plus_deleted(site: Site) -> None:
    """The destination's content changed and the source is gone: two facts, two events."""
    site.start()
    os.rename(site.w / "readme", site.w / "conf" / "app.conf")
    events = site.settled()
    assert [(e.kind, e.fields["path"]) for e in events] == [
        ("fim.modified", str(site.w / "conf" / "app.conf")),
        ("fim.deleted", str(site.w / "readme"))]
    assert events[0].fields["changed"] == ["content", "size", "inode"]
