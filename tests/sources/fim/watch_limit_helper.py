"""Run inside a fresh user namespace (``unshare -U -r``) by test_fim_limits.py.

The namespace has its own ``user.max_inotify_watches``, so lowering it here
gives sentinel a real ENOSPC from the kernel without touching the limit every
other process on the machine lives under. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo, for tests.*

from sentinel.sources.fim import FimSource
from tests.sources.fim.fimkit import Site, wait_for


def paths(site: Site) -> set[str]:
    return {str(e.fields["path"]) for e in site.changes()}


def no_instances(root: Path) -> None:
    """Not even one inotify instance (EMFILE): the source runs on rescans alone."""
    Path("/proc/sys/user/max_inotify_instances").write_text("0\n")
    site = Site(root)
    early = site.start(site.config(fim_extra=("rescan_interval: 1s",)))
    assert site.source is not None
    (site.w / "readme").write_text("changed with nobody watching\n")
    wait_for(site.changes, what="the periodic rescan")
    out = {
        "early": [e.kind for e in early],
        "limit_rescans": site.metric("sentinel_fim_rescans_total", reason="watch_limit"),
        "events": [[e.kind, e.fields["path"], e.fields["offline"]] for e in site.changes()],
        "alive": site.source.alive(),
    }
    site.stop()
    print(json.dumps(out))


def main() -> None:
    root = Path(sys.argv[1])
    if sys.argv[2] == "no-instances":
        no_instances(root)
        return
    limit = int(sys.argv[2])
    Path("/proc/sys/user/max_inotify_watches").write_text(f"{limit}\n")
    site = Site(root)
    FimSource.UNWATCHED_POLL = 0.3  # the test's own clock for the degraded-mode poll
    for i in range(10):
        (site.w / f"d{i}").mkdir()
        (site.w / f"d{i}" / "f").write_text(str(i))
    early = site.start()
    assert site.source is not None
    wait_for(site.source.idle, what="the watch-limit rescan queued at startup")
    startup_limit = site.metric("sentinel_fim_rescans_total", reason="watch_limit")
    # a directory moved in live: its watch cannot be added, so it is rescanned
    staged = root / "staging" / "late"
    staged.mkdir(parents=True)
    (staged / "payload").write_text("x")
    new = site.w / "late"
    staged.rename(new)
    site.barrier()
    wait_for(lambda: str(new / "payload") in paths(site), what="the rescan of late/")
    # and a later change in the unwatched directory is found by polling it
    (new / "payload").write_text("changed")
    wait_for(lambda: any(e.kind == "fim.modified" for e in site.changes()),
             what="the poll of late/")
    site.barrier()
    out = {
        "early": [e.kind for e in early],
        "startup_limit_rescans": startup_limit,
        "limit_rescans": site.metric("sentinel_fim_rescans_total", reason="watch_limit"),
        "events": [[e.kind, e.fields["path"], e.fields["offline"]] for e in site.changes()],
        "alive": site.source.alive(),
    }
    site.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
