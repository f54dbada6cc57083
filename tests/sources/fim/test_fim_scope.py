"""Which paths are watched: most specific entry, recursion, excludes, links not followed."""

from __future__ import annotations

import os
from pathlib import Path

from sentinel.config import FimPath
from sentinel.sources.fim.scan import Scope


def tree(root: Path) -> None:
    for d in ("etc/tally/sub", "etc/cron.d", "etc/tally/cache.swp", "other"):
        (root / d).mkdir(parents=True)
    for f in ("etc/passwd", "etc/hostname", "etc/tally/app.conf", "etc/tally/sub/deep.conf",
              "etc/tally/app.conf~", "etc/tally/cache.swp/blob", "etc/cron.d/job",
              "other/secret"):
        (root / f).write_text(f)
    os.symlink(root / "other", root / "etc" / "tally" / "link-out")


def test_entries_recursion_and_excludes(tmp_path: Path) -> None:
    tree(tmp_path)
    e = tmp_path / "etc"
    scope = Scope([FimPath(e / "tally", True, ("cfg",)), FimPath(e / "passwd", True, ("acct",)),
                   FimPath(e / "cron.d", False, ("persist",))],
                  exclude=("*~", "*.swp"), skip=(e / "tally" / "sub",))
    walked = {os.path.relpath(p, e) for p, _ in scope.walk()}
    # not hostname, excluded plain files, skipped dir, link target; an excluded
    # directory is walked (only what cannot run is hidden in it)
    assert walked == {"tally", "tally/app.conf", "tally/link-out", "tally/cache.swp", "passwd",
                      "cron.d", "cron.d/job"}
    assert scope.tags(str(e / "tally" / "app.conf")) == ("cfg",)
    assert scope.tags(str(e / "passwd")) == ("acct",)
    assert scope.entry_for(str(e / "hostname")) is None  # a sibling in a parent watch
    blob = e / "tally" / "cache.swp" / "blob"
    assert scope.hides(str(blob), blob.lstat().st_mode)
    assert scope.entry_for(str(e / "tally" / "sub" / "deep.conf")) is None
    assert scope.entry_for(str(e / "cron.d" / "x" / "y")) is None  # not recursive
    assert scope.wants_watch(str(e / "cron.d")) and not scope.wants_watch(str(e / "other"))
    assert scope.parent_dirs() == {str(e)}


def test_the_most_specific_entry_wins(tmp_path: Path) -> None:
    tree(tmp_path)
    e = tmp_path / "etc"
    scope = Scope([FimPath(e, True, ("etc",)), FimPath(e / "tally", True, ("cfg",)),
                   FimPath(e / "tally" / "app.conf", True, ("app",))])
    assert scope.tags(str(e / "hostname")) == ("etc",)
    assert scope.tags(str(e / "tally" / "sub" / "deep.conf")) == ("cfg",)
    assert scope.tags(str(e / "tally" / "app.conf")) == ("app",)
    assert scope.change_tags(str(e / "hostname"), str(e / "tally" / "x")) == ("etc", "cfg")
    paths = [p for p, _ in scope.walk()]
    assert len(paths) == len(set(paths))  # nested entries walked once
