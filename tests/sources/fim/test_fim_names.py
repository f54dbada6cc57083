"""File names are bytes: any name is alerted, journaled and delivered whole.

A name that is not valid UTF-8 travels as text with ``\\xHH`` escapes plus a
``*_b64`` twin holding the raw bytes; controls and bidi overrides are shown
escaped in titles and in the report, never rendered.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sentinel.events import name_bytes, name_fields, visible
from tests.sinks.am import Alertmanager
from tests.sinks.receiver import Receiver
from tests.sources.fim.daemonkit import SECRET, SENTINEL, Daemon
from tests.sources.fim.fimkit import Site, wait_for

HOSTILE = [
    b"/w/tally",
    b"/w/\xff",
    b"/w/x\xfe",
    b"/w/\\xff",  # a real backslash-x-f-f: must not collide with the escape of byte 0xff
    b"/w/\\\xff",
    b"/w/\xc3(",  # a broken two-byte sequence
    b"/w/\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"/w/invoice\xe2\x80\xaefdp.sh",  # U+202E, valid UTF-8
    b"/w/a\nb\x1b[31m",
]


@pytest.mark.parametrize("raw", HOSTILE, ids=lambda r: r.decode("ascii", "backslashreplace"))
def test_name_fields_round_trip_to_the_same_bytes(raw: bytes) -> None:
    for form in (raw, os.fsdecode(raw)):
        fields = name_fields(form, "path")
        assert name_bytes(fields, "path") == raw
        fields["path"].encode("utf-8")  # always encodable text
        valid = True
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            valid = False
        assert (fields["path_b64"] is None) == valid


def test_different_names_never_look_the_same() -> None:
    """A real backslash-x-f-f and the byte 0xff have the same text; the ``_b64`` twin
    (present only for the name that is not UTF-8) tells them apart."""
    forms = [tuple(name_fields(r, "path").values()) for r in HOSTILE]
    assert len(set(forms)) == len(forms)
    assert name_fields(b"/w/\xff", "path") == {"path": "/w/\\xff", "path_b64": "L3cv/w=="}
    assert name_fields(b"/w/\\xff", "path") == {"path": "/w/\\xff", "path_b64": None}


def test_visible_escapes_controls_and_bidi_only() -> None:
    assert visible("invoice\u202efdp.sh") == "invoice\\u202efdp.sh"
    assert visible("a\nb\x1b[31m") == "a\\x0ab\\x1b[31m"
    assert visible("zero\u200bwidth\u2066iso\u2069") == "zero\\u200bwidth\\u2066iso\\u2069"
    assert visible("Tally program file changed: /opt/tally/bin/hasil-suara") == \
        "Tally program file changed: /opt/tally/bin/hasil-suara"
    assert visible("naïve 日本") == "naïve 日本"


def test_live_events_carry_undecodable_names_losslessly(site: Site) -> None:
    """Real inotify: a move to an undecodable name and a new setuid file named x\\xfe."""
    site.start()
    w = os.fsencode(site.w)
    os.rename(w + b"/bin/tally", w + b"/bin/\xff")
    fd = os.open(w + b"/x\xfe", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"#!/bin/sh\nid\n")
    os.close(fd)
    os.chmod(w + b"/x\xfe", 0o4755)
    events = site.settled()
    moved = [e for e in events if e.kind == "fim.moved"]
    assert len(moved) == 1
    assert name_bytes(moved[0].fields, "path") == w + b"/bin/tally"
    assert name_bytes(moved[0].fields, "dest_path") == w + b"/bin/\xff"
    assert moved[0].fields["dest_path"] == str(site.w) + "/bin/\\xff"
    created = [e for e in events if e.kind == "fim.created"]
    assert [name_bytes(e.fields, "path") for e in created] == [w + b"/x\xfe"]
    assert created[0].fields["is_setuid"] is True


def test_hostile_names_reach_the_journal_and_the_webhooks(tmp_path: Path) -> None:
    """The real daemon: each change to a hostile name is journaled and delivered with
    its raw bytes (a json webhook, a real Alertmanager), titles show controls and
    U+202E escaped, and the report too."""
    with Receiver(secret=SECRET) as r, Alertmanager(tmp_path / "am") as am:
        d = Daemon(tmp_path, r.url, alertmanager_url=am.url)
        w = os.fsencode(d.w)
        (d.w / "bin").mkdir()
        (d.w / "bin" / "tally-server").write_bytes(b"\x7fELF tally\n")
        os.chmod(d.w / "bin" / "tally-server", 0o755)
        d.start()
        try:
            os.rename(w + b"/bin/tally-server", w + b"/bin/\xff")
            fd = os.open(w + b"/x\xfe", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"#!/bin/sh\nid\n")
            os.close(fd)
            os.chmod(w + b"/x\xfe", 0o4755)
            bidi = w + "/invoice\u202efdp.sh".encode()
            Path(os.fsdecode(bidi)).write_bytes(b"x")
            ctl = w + b"/a\nb\x1b[31m"
            Path(os.fsdecode(ctl)).write_bytes(b"y")
            d.wait_alerted({w + b"/bin/\xff", w + b"/x\xfe", bidi, ctl})
            # Alertmanager keeps one alert per label set, the latest: make the last one
            # the worst name of all, and only then
            worst = w + b"/zz\x1b]\xfe" + "\u202e".encode()
            Path(os.fsdecode(worst)).write_bytes(b"z")
            d.wait_alerted({worst})
            alerts = d.alerts()
            ids = {a["id"] for a in alerts}
            wait_for(lambda: r.delivered_ids() >= ids, what="every alert at the webhook")
            held = wait_for(lambda: [a for a in am.alerts()
                                     if a["annotations"]["alert_id"] == alerts[-1]["id"]],
                            what="the last alert in Alertmanager")
        finally:
            assert d.stop() == 0
    assert name_bytes(alerts[-1]["event"]) == worst
    ann = held[0]["annotations"]  # the summary as titled; the digest escaped, and lossless
    assert ann["summary"] == alerts[-1]["title"]
    assert "\\x1b]\\xfe\\u202e" in ann["summary"]
    assert "\u202e" not in ann["description"] and "\x1b" not in ann["description"]
    b64 = alerts[-1]["event"]["path_b64"]
    assert f"path_b64={b64}" in ann["description"]
    assert all(req.signature_ok for req in r.requests)
    delivered = {req.json()["id"]: req.json() for req in r.delivered()}
    for a in alerts:
        assert delivered[a["id"]]["event"] == a["event"]  # the same lossless fields
    titles = {name_bytes(a["event"], "dest_path") or name_bytes(a["event"], "path"): a["title"]
              for a in alerts}
    assert "\\u202e" in titles[bidi] and "\u202e" not in titles[bidi]
    assert "\\x0a" in titles[ctl] and "\\x1b" in titles[ctl] and "\x1b" not in titles[ctl]
    assert "\\xff" in titles[w + b"/bin/\xff"]

    out = tmp_path / "report.html"
    done = subprocess.run([SENTINEL, "report", "-c", str(d.config), "-o", str(out)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FIM_TEST_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "\u202e" not in html and "\x1b" not in html
    assert "invoice\\u202efdp.sh" in html


def test_attestation_leaves_name_every_file_apart(site: Site) -> None:
    """Leaves of files named with the byte 0xff and with a real backslash-x-f-f differ,
    are plain ASCII JSON, and `attest prove` finds each by the name the OS gives."""
    from sentinel.attest.merkle import MerkleTree, canonical_json, leaf_fields
    from sentinel.sources.fim.scan import snapshot

    w = os.fsencode(site.w)
    names = [w + b"/\xff", w + b"/\\xff", w + b"/plain"]
    for n in names:
        Path(os.fsdecode(n)).write_bytes(b"x")
    records = [snapshot(os.fsdecode(n)) for n in names]
    assert all(r is not None for r in records)
    leaves = [leaf_fields(r) for r in records if r is not None]
    assert [f["path"] for f in leaves] == [str(site.w) + "/\\xff", str(site.w) + "/\\\\xff",
                                           str(site.w) + "/plain"]
    for f in leaves:
        canonical_json(f).decode("ascii")
    tree = MerkleTree.from_records(r for r in records if r is not None)
    found = {tree.index_of(os.fsdecode(n)) for n in names}
    assert found == {0, 1, 2}
    os.symlink(b"/opt/\xfe", w + b"/link")  # a target is a name too
    link = snapshot(os.fsdecode(w + b"/link"))
    assert link is not None
    assert leaf_fields(link)["target"] == "/opt/\\xfe"
    canonical_json(leaf_fields(link)).decode("ascii")


def test_baseline_verify_reports_undecodable_names_and_exits_1(tmp_path: Path) -> None:
    """Offline too: `baseline verify` prints the drift of files with hostile names as
    JSON lines carrying the raw bytes, and exits 1."""
    d = Daemon(tmp_path)
    (d.w / "bin").mkdir()
    (d.w / "bin" / "tally-server").write_bytes(b"\x7fELF tally\n")
    env = {**os.environ, "FIM_TEST_SECRET": SECRET}
    init = subprocess.run([SENTINEL, "baseline", "init", "-c", str(d.config)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert init.returncode == 0, init.stderr
    w = os.fsencode(d.w)
    os.rename(w + b"/bin/tally-server", w + b"/bin/\xff")
    fd = os.open(w + b"/x\xfe", os.O_WRONLY | os.O_CREAT, 0o4755)
    os.close(fd)
    done = subprocess.run([SENTINEL, "baseline", "verify", "-c", str(d.config)],
                          capture_output=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    got = {(name_bytes(a["event"], "path"), name_bytes(a["event"], "dest_path"))
           for a in alerts}
    assert got == {(w + b"/bin/tally-server", w + b"/bin/\xff"), (w + b"/x\xfe", None)}
