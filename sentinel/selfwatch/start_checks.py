"""Checks at start, before the sources run: a missing baseline, a cut journal.

Deleting ``baseline.db`` while sentinel is stopped used to be a silent fresh
start: a new baseline took in whatever had been planted. When anything shows
that sentinel ran here before (its journal, the journal's head marker,
attestations, the baseline key, the run marker), a missing baseline is a
critical alert, raised before the new one is made.
"""

from __future__ import annotations

import os
import time

from sentinel import logs
from sentinel.alert import Alert
from sentinel.config import Config
from sentinel.keys import key_path
from sentinel.selfwatch.alerts import (
    BASELINE_MISSING,
    JOURNAL_TRUNCATED,
    in_schedule,
    self_alert,
)
from sentinel.selfwatch.journal_head import Cut, HeadMarker, attested_head, check_head
from sentinel.sinks.journal import journal_files

log = logs.get("selfwatch")

#: Written at every start: proof that sentinel ran with this state dir.
RUN_MARKER = "sentinel.ran"


def earlier_run_evidence(config: Config) -> list[str]:
    """What shows sentinel ran here before (paths), empty on a true first start."""
    journal = config.in_state(config.outputs.journal.path)
    found = [str(p) for p in journal_files(journal) if p.stat().st_size > 0]
    candidates = [config.state_dir / RUN_MARKER, journal.with_name(journal.name + ".head")]
    fim_key = key_path(config.fim.key, config.state_dir)
    if fim_key is not None:
        candidates.append(fim_key)
    found += [str(p) for p in candidates if os.path.lexists(p)]
    att = config.in_state(config.attest.dir)
    if att.is_dir() and any(p.name.startswith("attestation-") for p in att.iterdir()):
        found.append(str(att))
    return found


def mark_run(config: Config) -> None:
    """Leave the run marker (its time is when this start happened)."""
    p = config.state_dir / RUN_MARKER
    try:
        p.write_text(f"{time.time():.0f}\n")
    except OSError as exc:
        log.warning("cannot_write_run_marker", path=str(p), error=exc.strerror)


def baseline_missing(config: Config, now: float) -> Alert | None:
    """The critical alert for a baseline gone since an earlier run, or None."""
    if not config.fim.paths:
        return None
    baseline = config.in_state(config.fim.baseline)
    if os.path.lexists(baseline):
        return None
    evidence = earlier_run_evidence(config)
    if not evidence:
        return None
    log.error("baseline_missing_after_earlier_run",
              detail="a new one is made from what is on disk now, which may include what was"
                     " planted",
              baseline=str(baseline), evidence=evidence)
    return self_alert(
        config, BASELINE_MISSING, "sentinel's file-integrity baseline was deleted",
        "critical", now, "baseline_missing",
        "The signed baseline is gone although sentinel ran here before. Changes made while"
        " it was missing are not reported; a new baseline is being made from the disk as"
        " it is now. Compare the disk with a known-good copy or the last attestation.",
        ("Baseline integritas berkas sentinel telah dihapus",
         "Baseline yang ditandatangani hilang padahal sentinel pernah berjalan di sini."
         " Perubahan yang dibuat selama baseline hilang tidak dilaporkan; baseline baru"
         " sedang dibuat dari isi disk saat ini. Bandingkan disk dengan salinan yang diketahui"
         " baik atau dengan atestasi terakhir."),
        path=str(baseline), evidence=evidence, schedules_open=in_schedule(config, now))


def journal_cut(config: Config, key: bytes, head: tuple[int, str]) -> Cut | None:
    """Compare the open journal's head with its signed marker and the latest attestation."""
    journal = config.in_state(config.outputs.journal.path)
    marker = HeadMarker(journal, key)
    try:
        signed = marker.read()
    except ValueError as exc:
        log.error("journal_head_marker_invalid", error=str(exc))
        return Cut(0, "", head[0], head[1], f"marker ({exc})")
    if signed is not None and (cut := check_head(journal, key, head, signed, "head marker")):
        return cut
    att = attested_head(config.in_state(config.attest.dir), config.host.name)
    if att is not None and (cut := check_head(journal, key, head, att[0], att[1])):
        return cut
    if signed is None and head[0] > 0:
        # a journal with records always has a marker once this version ran
        log.warning("journal_head_marker_missing", detail="first start of this version, or deleted",
                    path=str(marker.path))
    return None


def journal_cut_alert(config: Config, cut: Cut, now: float) -> Alert:
    journal = config.in_state(config.outputs.journal.path)
    text = (cut.describe(journal) if cut.expected_records
            else f"{journal}: the signed head marker is forged or damaged: {cut.witness}")
    log.error("journal_cut", detail=text)
    return self_alert(
        config, JOURNAL_TRUNCATED, "sentinel's alert journal was cut short", "critical", now,
        "journal_truncated",
        f"{text}. Alerts recorded there are gone from this host; compare with what the"
        " webhooks received.",
        ("Jurnal peringatan sentinel telah dipotong",
         f"{text}. Peringatan yang tercatat di sana hilang dari host ini; bandingkan dengan"
         " apa yang diterima webhook."),
        path=str(journal), expected_records=cut.expected_records,
        expected_head=cut.expected_head, found_records=cut.found_records,
        found_head=cut.found_head, witness=cut.witness)
