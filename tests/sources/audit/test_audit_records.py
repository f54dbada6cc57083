"""The record parser and assembler, on records captured from this kernel (Linux 6.18).

records-linux-6.18.txt was recorded from the audit multicast group while a copy of
/bin/sh named ``evil<LF>sh`` changed files under a subtree rule (see its header).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from sentinel.actors import Users
from sentinel.sources.audit.index import FITS, RecordIndex, actor_fields
from sentinel.sources.audit.netlink import WatchRule, decode_rule
from sentinel.sources.audit.records import (
    AUDIT_EOE,
    AUDIT_PATH,
    AUDIT_SYSCALL,
    Assembler,
    Record,
    config_change,
)

FIXTURE = Path(__file__).with_name("records-linux-6.18.txt")
W = b"/tmp/auditcap/w"
EVIL = b"/tmp/auditcap/evil\nsh"


def messages() -> list[tuple[int, bytes]]:
    out = []
    for line in FIXTURE.read_bytes().split(b"\n"):
        if line and not line.startswith(b"#"):
            t, _, payload = line.partition(b" ")
            out.append((int(t), payload))
    return out


def assemble(asm: Assembler | None = None) -> list[Record]:
    asm = asm or Assembler(key=b"sentinel")
    out: list[Record] = []
    for t, p in messages():
        out += asm.feed(t, p, 0.0)
    return out


def by_path(recs: list[Record], name: bytes) -> list[Record]:
    return [r for r in recs if any(i.name == name for i in r.paths)]


def test_each_syscall_becomes_one_record_with_its_paths_cwd_and_command() -> None:
    recs = assemble()
    # the fixture also holds the records of the audit requests themselves (key=(null))
    assert len(recs) == sum(1 for t, p in messages()
                            if t == AUDIT_SYSCALL and p.endswith(b'key="sentinel"'))
    first = recs[0]
    assert first.syscall == 257 and first.success is True
    assert first.exe == EVIL and first.comm == b"evil\nsh"
    assert first.cwd == W
    assert [(i.name, i.nametype) for i in first.paths] == [(W, "PARENT"),
                                                           (W + b"/f1", "CREATE")]
    assert first.pid is not None and first.ppid is not None and first.uid == 0


def test_hostile_names_and_exe_are_decoded_losslessly() -> None:
    recs = by_path(assemble(), W + b"/n\xff\nl")
    assert len(recs) == 1
    assert recs[0].exe == EVIL
    fields = actor_fields(recs[0], Users())
    assert fields["process_exe"] == "/tmp/auditcap/evil\nsh"
    assert fields["process_exe_b64"] is None  # valid UTF-8: the text is the name


def test_command_line_has_its_nul_separators_as_spaces() -> None:
    (chmod,) = [r for r in assemble() if r.comm == b"chmod"]
    assert chmod.command() == b"chmod 600 f1"
    assert actor_fields(chmod, Users())["process_command"] == "chmod 600 f1"


def test_relative_names_are_joined_to_the_cwd() -> None:
    recs = assemble()
    assert by_path(recs, W + b"/sub/x"), "touch sub/x names the file below sub"
    assert by_path(recs, W + b"/f2")


def test_unset_login_uid_and_session_are_none() -> None:
    fields = actor_fields(assemble()[0], Users())
    assert fields["process_login_uid"] is None and fields["process_session"] is None
    assert fields["process_user"] == "root" and fields["process_via"] == "audit"


def test_an_event_without_its_eoe_is_let_go_after_the_timeout_and_counted() -> None:
    asm = Assembler(timeout=2.0)
    syscall = next(p for t, p in messages() if t == AUDIT_SYSCALL)
    assert asm.feed(AUDIT_SYSCALL, syscall, 0.0) == []
    assert asm.pending() == 1
    assert asm.expire(1.0) == []
    (late,) = asm.expire(2.5)
    assert late.pid is not None and asm.lost["incomplete"] == 1 and asm.pending() == 0


def test_open_events_are_bounded_and_the_overflow_counted() -> None:
    asm = Assembler(max_pending=4)
    syscall = next(p for t, p in messages()
                   if t == AUDIT_SYSCALL and p.endswith(b'key="sentinel"'))
    for serial in range(10):
        other = re.sub(rb":\d+\):", f":{1000 + serial}):".encode(), syscall, count=1)
        asm.feed(AUDIT_SYSCALL, other, 0.0)
    assert asm.pending() <= 4
    assert asm.lost["overflow"] >= 6


def test_records_of_other_rules_are_ignored() -> None:
    asm = Assembler(key=b"someone-else")
    assert assemble(asm) == []
    assert asm.pending() == 0


def test_garbage_never_raises_and_is_counted() -> None:
    rnd = random.Random(19)
    asm = Assembler()
    real = [p for _, p in messages()]
    for _ in range(3000):
        base = bytearray(rnd.choice(real))
        for _ in range(rnd.randrange(1, 8)):
            if base:
                base[rnd.randrange(len(base))] = rnd.randrange(256)
        payload = bytes(base[: rnd.randrange(len(base) + 1)]) if rnd.random() < 0.3 else bytes(base)
        asm.feed(rnd.choice((AUDIT_SYSCALL, AUDIT_PATH, AUDIT_EOE, 1307, 1327, 1305, 9999)),
                 payload, rnd.random() * 10)
    assert asm.lost["unparseable"] > 0
    assert asm.pending() <= asm.max_pending


def test_config_change_records_say_which_rule_went() -> None:
    changes = [config_change(p) for t, p in messages() if t == 1305]
    assert any(c is not None and c[b"op"] == b"remove_rule" and c[b"key"] == b'"sentinel"'
               for c in changes)


def test_a_name_logged_relative_to_a_directory_descriptor_is_matched_by_inode_only() -> None:
    # rm -r sub unlinks "x" relative to sub's descriptor; the kernel joins it to the
    # CWD (w/x): the name is wrong, the inode is the file's
    index = RecordIndex()
    for r in assemble():
        index.add(r)
    (wrong,) = [r for r in assemble() if any(i.name == W + b"/x" for i in r.paths)]
    inode = next(i.inode for i in wrong.paths if i.name == W + b"/x")
    assert inode is not None
    found = index.find([W + b"/sub/x"], [inode], FITS["fim.deleted"])
    assert found is not None and found.serial == wrong.serial
    assert index.find([W + b"/x"], [inode + 12345], FITS["fim.deleted"]) is None


def test_a_deletion_is_not_given_the_record_of_the_files_creation() -> None:
    index = RecordIndex()
    recs = assemble()
    created = next(r for r in recs if any(i.name == W + b"/f1" and i.nametype == "CREATE"
                                          for i in r.paths))
    index.add(created)
    assert index.find([W + b"/f1"], [], FITS["fim.deleted"]) is None
    assert index.find([W + b"/f1"], [], FITS["fim.created"]) is created


def test_index_forgets_records_after_keep_seconds_and_beyond_its_size() -> None:
    now = [0.0]
    index = RecordIndex(keep=10.0, max_records=3, clock=lambda: now[0])
    recs = assemble()
    for r in recs[:5]:
        index.add(r)
    assert len(index) == 3
    now[0] = 20.0
    index.add(recs[5])
    assert len(index) == 1
    assert index.find([W + b"/f1"], []) is None


def test_watch_rules_round_trip_with_hostile_bytes() -> None:
    for rule in (WatchRule(b"/etc/passwd", False), WatchRule(b"/opt/t\xff\nx", True)):
        assert decode_rule(rule.encode()) == rule
    assert decode_rule(b"\x00" * 10) is None


def test_a_content_change_is_not_given_a_chmods_record_nor_a_chmod_a_writers() -> None:
    recs = assemble()
    index = RecordIndex()
    for r in recs:
        if r.comm in (b"chmod", b"evil\nsh"):
            index.add(r)
    (chmod,) = [r for r in recs if r.comm == b"chmod"]
    inode = next(i.inode for i in chmod.paths if i.name == W + b"/f1")
    assert inode is not None
    attrib = index.find([W + b"/f1"], [inode], FITS["fim.attrib"])
    assert attrib is chmod
    modified = index.find([W + b"/f1"], [inode], FITS["fim.modified"])
    assert modified is not None and modified.comm == b"evil\nsh"
    assert modified.syscall == 257  # the shell's open for writing (>>)
