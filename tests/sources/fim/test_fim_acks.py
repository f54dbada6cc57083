"""The baseline file takes a change only once its event is acknowledged as journaled.

The collector plays the daemon: it acknowledges each event as journaled, or (with
``journaled = False``) as refused, like a journal on a full disk.
"""

from __future__ import annotations

import os
import sqlite3

from tests.sources.fim.fimkit import Site, kinds, wait_for


def _in_file(site: Site, path: str) -> bool:
    conn = sqlite3.connect(f"file:{site.state / 'baseline.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT 1 FROM files WHERE path = ?", (os.fsencode(path),))
        return row.fetchone() is not None
    finally:
        conn.close()


def test_refused_events_are_sent_again_and_committed_only_once_journaled(site: Site) -> None:
    site.start()
    new = str(site.w / "new-file")
    site.events.journaled = False
    (site.w / "new-file").write_text("x\n")

    def sent() -> int:
        return sum(1 for e in site.events.snapshot() if e.fields.get("path") == new)

    wait_for(lambda: sent() >= 2, what="the refused event sent again (after 1 s)")
    assert not _in_file(site, new)
    assert site.source is not None and site.source.unacknowledged() == 1
    site.events.journaled = True
    wait_for(lambda: _in_file(site, new), what="the change committed once journaled")
    assert site.source.unacknowledged() == 0
    before = sent()
    site.barrier()
    assert sent() == before  # no more re-sends once it was taken
    site.stop()
    assert site.start() == []  # committed: nothing to report again


def test_a_change_never_acknowledged_is_reported_again_after_a_restart(site: Site) -> None:
    """What a crash leaves behind: the event went out but its ack never came back."""
    site.start()
    assert site.source is not None
    site.events.journaled = False
    (site.w / "conf" / "app.conf").write_text("threshold = 1\n")
    wait_for(site.changes, what="the change reported")
    site.stop()  # the refusal stands: the change must stay out of the file
    site.events.journaled = True
    assert kinds(site.start()) == [("fim.modified", "conf/app.conf")]
