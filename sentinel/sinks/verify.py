"""Check a journal's hash chain (see :mod:`sentinel.sinks.journal` for the format).

The walk streams line by line, so memory stays flat whatever the journal's
size. The first bad record is named by file and 1-based line. An incomplete
last line of the newest file is what a crash mid-write leaves: it is reported,
but it is not tampering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sentinel.sinks.journal import GENESIS, decode_record, journal_files


@dataclass
class JournalReport:
    """What :func:`verify_journal` found.

    ``ok`` is False only for tampering (an edit, a deletion, a reordering, a
    forged or foreign record); then ``bad_file``/``bad_line``/``problem`` name
    the first bad record. ``truncated`` names an incomplete last line.
    """

    files: list[Path] = field(default_factory=list)
    records: int = 0
    head: str = GENESIS
    ok: bool = True
    bad_file: Path | None = None
    bad_line: int | None = None
    problem: str | None = None
    truncated: tuple[Path, int] | None = None

    def where(self) -> str:
        return f"{self.bad_file}:{self.bad_line}"


class _Walk:
    def __init__(self, key: bytes, report: JournalReport) -> None:
        self.key = key
        self.r = report
        self.seq = 0
        self.prev = GENESIS

    def fail(self, f: Path, line: int, problem: str) -> None:
        self.r.ok = False
        self.r.bad_file, self.r.bad_line, self.r.problem = f, line, problem

    def line(self, f: Path, n: int, raw: bytes, last: bool) -> bool:
        """Check one line; False stops the walk."""
        complete = raw.endswith(b"\n")
        body = raw[:-1] if complete else raw
        decoded = decode_record(self.key, body)
        if decoded is None:
            if not complete and last:
                self.r.truncated = (f, n)
                return False
            self.fail(f, n, "not a journal record (edited or damaged)")
            return False
        rec, mac_ok = decoded
        seq = rec["seq"]
        if not mac_ok:
            self.fail(f, n, f"seq {seq}: the MAC does not match: the record was edited, or"
                      " written with another key")
        elif seq > self.seq:
            gone = f"seq {self.seq}" if seq == self.seq + 1 else f"seq {self.seq}..{seq - 1}"
            self.fail(f, n, f"seq {seq} follows seq {self.seq - 1}: {gone} missing (deleted)"
                      if self.seq else f"the journal starts at seq {seq}: {gone} missing"
                      " (deleted)")
        elif seq < self.seq:
            self.fail(f, n, f"seq {seq} where seq {self.seq} was due: records reordered or"
                      " duplicated")
        elif rec["prev"] != self.prev:
            self.fail(f, n, f"seq {seq}: its prev does not match the previous record's MAC:"
                      " the chain was rebuilt or spliced")
        else:
            self.seq += 1
            self.prev = rec["mac"]
            self.r.records = self.seq
            self.r.head = self.prev
            return True
        return False


def verify_journal(path: Path, key: bytes) -> JournalReport:
    """Walk the journal at ``path`` (and its rotated ``path.N`` files) and check the chain.

    Raises ``FileNotFoundError`` when there is no journal at ``path`` and
    ``OSError`` when a file cannot be read.
    """
    files = journal_files(path)
    if not files:
        msg = f"no journal at {path} (nor rotated {path.name}.N files)"
        raise FileNotFoundError(msg)
    report = JournalReport(files=files)
    walk = _Walk(key, report)
    for i, f in enumerate(files):
        last_file = i == len(files) - 1
        with f.open("rb") as fh:
            prev_raw: bytes | None = None
            n = 0
            # look one line ahead so that "last line" is known when checking it
            for raw in fh:
                if prev_raw is not None and not walk.line(f, n, prev_raw, False):
                    return report
                prev_raw = raw
                n += 1
            if prev_raw is not None and not walk.line(f, n, prev_raw, last_file):
                return report
    return report
