"""File names are bytes: any name is alerted, journaled and delivered whole.

A name that is not valid UTF-8 travels as text with ``\\xHH`` escapes plus a
``*_b64`` twin holding the raw bytes; controls and bidi overrides are shown
escaped in titles and in the report, never rendered.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sentinel.events import name_bytes, name_fields, visible
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


def test_hostile_names_reach_the_journal_and_the_webhook(tmp_path: Path) -> None:
    """The real daemon: each change to a hostile name is journaled and delivered with
    its raw bytes, titles show controls and U+202E escaped, and the report too."""
    with Receiver(secret=SECRET) as r:
        d = Daemon(tmp_path, r.url)
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
            want = {w + b"/bin/\xff", w + b"/x\xfe", bidi, ctl}
            d.wait_alerted(want)
            alerts = d.alerts()
            ids = {a["id"] for a in alerts}
            wait_for(lambda: r.delivered_ids() >= ids, what="every alert at the webhook")
        finally:
            assert d.stop() == 0
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
