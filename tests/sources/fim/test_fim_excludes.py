"""An exclude hides only a plain file that cannot run, and never one already known.

Real files, real inotify, ``exclude: ["*.tmp"]``.
"""

from __future__ import annotations

import os

from tests.sources.fim.fimkit import Site, kinds

EXCLUDE = '["*.tmp"]'


def test_live_only_plain_excluded_files_are_hidden(site: Site) -> None:
    site.start(site.config(exclude=EXCLUDE))
    (site.w / "plain.tmp").write_text("scratch\n")
    (site.w / "x.tmp").write_bytes(b"#!/bin/sh\nid\n")
    os.chmod(site.w / "x.tmp", 0o755)
    (site.w / "s.tmp").write_bytes(b"data\n")
    os.chmod(site.w / "s.tmp", 0o2644)  # setgid, not executable
    os.symlink("/bin/sh", site.w / "l.tmp")
    (site.w / "stash.tmp").mkdir()
    (site.w / "stash.tmp" / "run").write_bytes(b"#!/bin/sh\nid\n")
    os.chmod(site.w / "stash.tmp" / "run", 0o755)
    (site.w / "stash.tmp" / "notes").write_text("scratch\n")
    got = sorted(kinds(site.settled()))
    assert got == [("fim.created", "l.tmp"), ("fim.created", "s.tmp"),
                   ("fim.created", "stash.tmp"), ("fim.created", "stash.tmp/run"),
                   ("fim.created", "x.tmp")]
    by_path = {k[1]: e for k, e in zip(kinds(site.changes()), site.changes(), strict=True)}
    assert by_path["x.tmp"].fields["is_executable"] is True
    assert by_path["s.tmp"].fields["is_setgid"] is True


def test_a_hidden_file_made_executable_is_reported_then(site: Site) -> None:
    site.start(site.config(exclude=EXCLUDE))
    (site.w / "later.tmp").write_bytes(b"#!/bin/sh\nid\n")
    assert site.settled() == []
    os.chmod(site.w / "later.tmp", 0o755)
    events = site.settled()
    assert kinds(events) == [("fim.created", "later.tmp")]
    assert events[0].fields["is_executable"] is True


def test_a_known_file_renamed_to_an_excluded_name_stays_watched(site: Site) -> None:
    """Renaming app.conf to app.conf.tmp must not make it vanish from view: it is
    reported moved, later edits are reported, and a restart finds no false drift."""
    site.start(site.config(exclude=EXCLUDE))
    os.rename(site.w / "conf" / "app.conf", site.w / "conf" / "app.conf.tmp")
    assert kinds(site.settled()) == [("fim.moved", "conf/app.conf")]
    site.events.clear()
    (site.w / "conf" / "app.conf.tmp").write_text("threshold = 1\n")
    assert kinds(site.settled()) == [("fim.modified", "conf/app.conf.tmp")]
    site.stop()
    assert site.start(site.config(exclude=EXCLUDE)) == []


def test_offline_only_plain_excluded_files_are_hidden(site: Site) -> None:
    site.start(site.config(exclude=EXCLUDE))
    site.stop()
    (site.w / "plain.tmp").write_text("scratch\n")
    (site.w / "stash.tmp").mkdir()
    (site.w / "stash.tmp" / "run").write_bytes(b"#!/bin/sh\nid\n")
    os.chmod(site.w / "stash.tmp" / "run", 0o4755)
    (site.w / "stash.tmp" / "notes").write_text("scratch\n")
    got = site.start(site.config(exclude=EXCLUDE))
    assert sorted(kinds(got)) == [("fim.created", "stash.tmp"),
                                  ("fim.created", "stash.tmp/run")]
    assert all(e.fields["offline"] for e in got)
