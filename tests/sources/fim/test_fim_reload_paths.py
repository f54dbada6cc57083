"""A path added to fim.paths at a reload: what is under it is first seen, not changed.

Before the reload the path was not watched, so sentinel cannot know what happened
there; reporting each file as created "while sentinel was not running" would be
false on both counts and, for a large folder, a flood. The files are recorded as
they are (one log line says how many), and every change from then on is reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

from tests.sources.fim.daemonkit import Daemon
from tests.support import wait_for


def test_a_path_added_at_a_reload_is_recorded_then_watched(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    added = tmp_path / "results"
    added.mkdir()
    names = [f"tps-{i:03d}.csv".encode() for i in range(40)] + [b"h\xe9sil-\xff.csv"]
    for n in names:  # paths are bytes: one name is not UTF-8
        with open(os.fsencode(added) + b"/" + n, "wb") as fh:
            fh.write(b"votes\n")
    (d.w / "app").write_bytes(b"v1\n")
    d.start()
    try:
        text = d.config.read_text()
        assert f"paths: [{{path: {d.w}, tags: [w]}}]" in text
        d.config.write_text(text.replace(
            f"paths: [{{path: {d.w}, tags: [w]}}]",
            f"paths: [{{path: {d.w}, tags: [w]}}, {{path: {added}, tags: [w]}}]"))
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)

        def told() -> dict[str, object] | None:
            return next((x for x in (json.loads(ln) for ln in d.log_lines()
                                     if ln.startswith("{"))
                         if x.get("event") == "fim_paths_added"), None)
        line = wait_for(told, what="the added path's line")
        assert line["paths"] == [str(added)] and line["files"] == len(names) + 1  # and the dir
        # watched from now on: a change under it is reported, live
        changed = os.fsencode(added) + b"/" + names[-1]
        with open(changed, "ab") as fh:
            fh.write(b"+1000\n")
        d.wait_alerted({changed})
        # and nothing before it: no file was "created while sentinel was stopped"
        assert not any(a["event"].get("offline") for a in d.alerts()), d.alerts()
        assert d.alerted_paths() == {changed}
    finally:
        assert d.stop() == 0


def test_only_paths_not_watched_before_are_added(tmp_path: Path) -> None:
    """A path under a recursive entry, or a child of any entry, was watched already: its
    changes are changes."""
    from sentinel.config_reader import load_config
    from sentinel.parts import _added_roots

    def config(paths: str) -> Path:
        f = tmp_path / f"c{len(paths)}.yaml"
        f.write_text("host: {name: t, addresses: [10.20.0.10]}\n"
                     f"state_dir: {tmp_path}/state\nfim: {{paths: [{paths}]}}\n")
        return f

    old = load_config(config("/srv/tally, {path: /etc/tally, recursive: false}"))
    new = load_config(config("/srv/tally, /srv/tally/results, /srv/tallyx,"
                             " {path: /etc/tally, recursive: false}, /etc/tally/app.conf,"
                             " /etc/tally/conf.d"))
    assert _added_roots(old, new) == {"/srv/tallyx"}
    # a folder that was a child is watched; what lies deeper in it was not
    newer = load_config(config("/srv/tally, {path: /etc/tally, recursive: false},"
                               " /etc/tally/conf.d/a.conf"))
    assert _added_roots(old, newer) == {"/etc/tally/conf.d/a.conf"}
    # one of sentinel's own files joining the list (a key made while it ran) is no first
    # sight: it is reported
    from sentinel.selfwatch.own_files import with_own_files
    key = tmp_path / "keys" / "attest.key"
    key.parent.mkdir()
    key.write_text("k" * 64)
    own = load_config(config("/srv/tally, {path: /etc/tally, recursive: false}"))
    own = with_own_files(dataclasses.replace(own, attest=dataclasses.replace(
        own.attest, key_file=key)))
    assert str(key) in {str(e.path) for e in own.fim.paths}
    assert str(key) not in _added_roots(old, own)
