"""Real processes change watched files while the real FIM source and audit reader run;
each event names the process: pid, parent, exe, command, uid and user.

The writers are copies of sh, rm, mv and chmod in a folder whose name holds a
non-UTF-8 byte, started by this test (their parent), one of them as nobody.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sentinel.config import Config
from sentinel.config_reader import load_config
from sentinel.events import ACTOR_FIELDS, Event, name_bytes
from sentinel.sources.audit.netlink import (
    AUDIT_ADD_RULE,
    AUDIT_BITMASK_SIZE,
    AUDIT_DEL_RULE,
    AUDIT_EQUAL,
    AUDIT_MAX_FIELDS,
    RULE_KEY,
    AuditControl,
)
from tests.sources.audit.conftest import Tools
from tests.sources.fim.fimkit import Site, wait_for


def attributed_site(root: Path) -> tuple[Site, Config]:
    site = Site(root)
    site.config()
    cfg = root / "config.yaml"
    cfg.write_text(cfg.read_text() + "attribution: {files: audit}\n")
    return site, load_config(cfg)


def run(argv: list[bytes], user: int | None = None) -> int:
    """Run one writer to its end; its pid."""
    proc = subprocess.Popen(argv, user=user)
    assert proc.wait(timeout=10) == 0
    return proc.pid


def event_of(site: Site, kind: str, path: bytes) -> Event:
    def find() -> Event | None:
        for e in site.changes():
            if e.kind == kind and name_bytes(e.fields, "path") == path:
                return e
        return None
    site.barrier()
    return wait_for(find, what=f"{kind} of {path!r}")


def assert_actor(ev: Event, pid: int, exe: bytes, uid: int = 0, user: str = "root") -> None:
    f: dict[str, Any] = ev.fields
    assert f["process_unknown"] is None, f["process_unknown"]
    assert f["process_via"] == "audit"
    assert f["process_pid"] == pid
    assert f["process_ppid"] == os.getpid()
    assert base64.b64decode(f["process_exe_b64"]) == exe
    assert f["process_command"].startswith(os.fsdecode(exe).split("/")[-1]) or \
        f["process_command"].startswith("/")
    assert f["process_uid"] == uid and f["process_user"] == user


def test_create_modify_chmod_rename_delete_each_name_their_process(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    site, config = attributed_site(open_tmp)
    site.start(config)
    try:
        assert site.source is not None
        assert site.source.components() == {"attribution": True}
        w = os.fsencode(site.w)
        sh = tools.exe("sh")

        pid = run([sh, b"-c", b"echo new > " + w + b"/new"])
        assert_actor(event_of(site, "fim.created", w + b"/new"), pid, sh)

        pid = run([sh, b"-c", b"echo more >> " + w + b"/readme"])
        assert_actor(event_of(site, "fim.modified", w + b"/readme"), pid, sh)

        pid = run([tools.exe("chmod"), b"600", w + b"/readme"])
        ev = event_of(site, "fim.attrib", w + b"/readme")
        assert_actor(ev, pid, tools.exe("chmod"))
        assert "tally-chmod 600 " in ev.fields["process_command"]

        pid = run([tools.exe("mv"), w + b"/readme", w + b"/readme2"])
        assert_actor(event_of(site, "fim.moved", w + b"/readme"), pid, tools.exe("mv"))

        pid = run([tools.exe("rm"), w + b"/bin/tally"])
        assert_actor(event_of(site, "fim.deleted", w + b"/bin/tally"), pid, tools.exe("rm"))
        assert site.metric("sentinel_attributions_total", result="known") >= 5
    finally:
        site.stop()


def test_a_burst_shares_its_waits_for_records_and_names_every_writer_right(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    """One process rewrites 40 known files at once, then another changes their mode
    at once: the events queued behind one wait for the records share it (fewer
    canary round trips than events), and each event still names its own writer:
    a chmod is never given to the process that wrote the file just before."""
    site, config = attributed_site(open_tmp)
    w = os.fsencode(site.w)
    names = [w + b"/conf/f%02d" % i for i in range(40)]
    for n in names:
        Path(os.fsdecode(n)).write_text("0\n")
    site.start(config)

    def burst(kind: str) -> dict[bytes, Event]:
        def all_in() -> dict[bytes, Event] | None:
            got = {name_bytes(e.fields, "path"): e for e in site.changes() if e.kind == kind}
            return got if all(n in got for n in names) else None
        return wait_for(all_in, what=f"{kind} of all 40")

    try:
        sh = tools.exe("sh")
        writer = run([sh, b"-c", b'for f in "$@"; do echo 1 >> "$f"; done', b"sh", *names])
        # reported before the modes change, so no change is merged into another
        written = burst("fim.modified")
        changer = run([tools.exe("chmod"), b"600", *names])
        changed = burst("fim.attrib")
        for n in names:
            assert_actor(written[n], writer, sh)
            assert_actor(changed[n], changer, tools.exe("chmod"))
        made = site.metric("sentinel_attribution_barriers_total", kind="made")
        shared = site.metric("sentinel_attribution_barriers_total", kind="shared")
        assert shared > 0 and made < 80, (made, shared)
    finally:
        site.stop()


def test_a_hostile_name_and_a_non_root_writer_are_named_losslessly(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    site, config = attributed_site(open_tmp)
    os.chmod(site.w / "bin", 0o777)
    site.start(config)
    try:
        hostile = os.fsencode(site.w) + b"/bin/evil\xff\nname"
        sh = tools.exe("sh")
        pid = run([sh, b"-c", b'printf x > "$1"', b"sh", hostile], user=65534)
        ev = event_of(site, "fim.created", hostile)
        assert base64.b64decode(ev.fields["path_b64"]) == hostile
        assert_actor(ev, pid, sh, uid=65534, user="nobody")
    finally:
        site.stop()


def test_rules_deleted_under_the_source_are_added_again_logged_and_counted(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    site, config = attributed_site(open_tmp)
    site.start(config)
    try:
        src = site.source
        assert src is not None and src.attribution is not None
        ours = [r for r in audit_kernel.rules() if r.key == RULE_KEY
                and r.path.startswith(os.fsencode(open_tmp))]
        assert ours
        for r in ours:  # what `auditctl -D` does to them
            audit_kernel.delete(r)
        wait_for(lambda: site.metric("sentinel_audit_rules_readded_total") >= 1,
                 what="the rules to be added again")
        wait_for(lambda: set(ours) <= set(audit_kernel.rules()), what="the rules back")
        assert src.components() == {"attribution": True}
        w = os.fsencode(site.w)
        pid = run([tools.exe("sh"), b"-c", b"echo again >> " + w + b"/readme"])
        assert_actor(event_of(site, "fim.modified", w + b"/readme"), pid, tools.exe("sh"))
    finally:
        site.stop()
    left = [r for r in audit_kernel.rules() if r.path.startswith(os.fsencode(open_tmp))]
    assert left == [], "a clean stop deletes sentinel's own rules"


def test_changes_found_at_startup_say_they_happened_while_sentinel_was_stopped(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    site, config = attributed_site(open_tmp)
    site.start(config)
    site.stop()
    (site.w / "readme").write_text("changed while stopped\n")
    site.start(config)
    try:
        (ev,) = [e for e in site.events.snapshot() if e.kind == "fim.modified"]
        assert ev.fields["offline"] is True
        assert ev.fields["process_unknown"] == "changed while sentinel was not running"
        assert ev.fields["process_pid"] is None
    finally:
        site.stop()


def test_without_attribution_the_process_fields_are_all_none(open_tmp: Path) -> None:
    site = Site(open_tmp)
    site.start(site.config())
    try:
        assert site.source is not None and site.source.components() == {}
        (site.w / "readme").write_text("x\n")
        ev = event_of(site, "fim.modified", os.fsencode(site.w) + b"/readme")
        assert all(ev.get(f) is None for f in ACTOR_FIELDS)
    finally:
        site.stop()


def test_audit_found_off_is_switched_on_warned_and_counted_and_again_when_switched_off(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    audit_kernel.set_enabled(0)  # the fixture puts back what it found
    site, config = attributed_site(open_tmp)
    site.start(config)
    try:
        assert audit_kernel.status().enabled == 1
        assert site.metric("sentinel_attribution_audit_was_off") == 1
        assert site.metric("sentinel_attribution_up", source="fim") == 1
        audit_kernel.set_enabled(0)  # `auditctl -e 0` under a running sentinel
        wait_for(lambda: audit_kernel.status().enabled == 1, timeout=15,
                 what="audit switched on again")
        w = os.fsencode(site.w)
        pid = run([tools.exe("sh"), b"-c", b"echo on >> " + w + b"/readme"])
        assert_actor(event_of(site, "fim.modified", w + b"/readme"), pid, tools.exe("sh"))
    finally:
        site.stop()


#: A task-filter rule ``-a task,never -F gid=UNAUDITED_GID``: a process forked with that
#: group gets no audit context, as one forked before audit was ever enabled (which
#: cannot be made on a kernel where audit has been on since boot)
UNAUDITED_GID = 65533


def _task_never_rule() -> bytes:
    mask = [0xFFFFFFFF] * AUDIT_BITMASK_SIZE
    pad = [0] * (AUDIT_MAX_FIELDS - 1)
    return (struct.pack(f"=3I{AUDIT_BITMASK_SIZE}I", 0x01, 0, 1, *mask)  # task list, never
            + struct.pack(f"={AUDIT_MAX_FIELDS}I", 6, *pad)  # AUDIT_GID
            + struct.pack(f"={AUDIT_MAX_FIELDS}I", UNAUDITED_GID, *pad)
            + struct.pack(f"={AUDIT_MAX_FIELDS}I", AUDIT_EQUAL, *pad) + struct.pack("=I", 0))


def test_a_process_without_audit_context_is_not_named_and_the_event_says_why(
        audit_kernel: AuditControl, tools: Tools, open_tmp: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    site, config = attributed_site(open_tmp)
    site.start(config)
    rule = _task_never_rule()
    audit_kernel._request(AUDIT_ADD_RULE, rule)
    try:
        w = os.fsencode(site.w)
        # the subshell is forked with the unaudited group: its write has no record, and
        # the record of its parent (the shell, which only forks) does not name the file
        run([setpriv.encode(), f"--regid={UNAUDITED_GID}".encode(), b"--clear-groups",
             tools.exe("sh"), b"-c", b"(echo unseen >> " + w + b"/readme)"])
        ev = event_of(site, "fim.modified", w + b"/readme")
        assert ev.fields["process_pid"] is None and ev.fields["process_exe"] is None
        assert ev.fields["process_unknown"].startswith("no audit record")
        assert site.metric("sentinel_attributions_total", result="unknown") >= 1
    finally:
        audit_kernel._request(AUDIT_DEL_RULE, rule)
        site.stop()
