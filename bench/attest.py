"""Attestation and report costs, each against a baseline measured in the same run.

* Merkle tree over N baseline records (default 100 000): building the tree
  (leaf hashing included) against the floor any scheme pays, one SHA-256 of
  each record's canonical JSON; then proving and checking every leaf, per leaf.
* Incident report of M alerts (default 5 000) and two recipients: rendering the
  HTML page (delivery status included) against
serialising the same alerts with ``json.dumps``
  (what any export costs).

    .venv/bin/python bench/attest.py [--leaves N] [--alerts M]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from sentinel.attest.evidence import (
    AttestationStatus,
    Entry,
    Evidence,
    JournalStatus,
    Recipient,
)
from sentinel.attest.merkle import InclusionProof, MerkleTree, canonical_json
from sentinel.attest.report import render
from sentinel.config import WebhookConfig

SEVERITIES = ("critical", "high", "medium", "low", "info")


def _leaves(n: int) -> list[dict[str, object]]:
    return [{"path": f"/opt/tally/lib/module-{i:06d}.so",
             "sha256": hashlib.sha256(b"%d" % i).hexdigest(), "mode": 0o755, "uid": 0,
             "gid": 0} for i in range(n)]


def _best(fn: object, repeat: int = 3) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_merkle(n: int) -> None:
    leaves = _leaves(n)
    floor = _best(lambda: [hashlib.sha256(canonical_json(f)).digest() for f in leaves])
    build = _best(lambda: MerkleTree(leaves))
    tree = MerkleTree(leaves)

    def prove_all() -> None:
        for i in range(n):
            assert InclusionProof.of(tree, i).root() == tree.root

    proofs = _best(prove_all, 1)
    print(f"merkle, {n} leaves: hash-each-record floor {floor:.3f}s, tree {build:.3f}s"
          f" (x{build / floor:.2f} of the floor)")
    print(f"merkle, {n} proofs made and checked: {proofs:.3f}s,"
          f" {proofs / n * 1e6:.1f} us per file (x{proofs / floor:.2f} of the floor)")


def bench_report(m: int) -> None:
    t0 = 1_707_890_400.0
    alerts = [{"id": f"0190{i:028x}", "rule": "dns-unknown-domain", "title": f"Query {i}",
               "severity": SEVERITIES[i % 5], "time": f"2024-02-14T06:{i % 60:02d}:00.000Z",
               "host": "tally-01", "source": "network", "tags": ["network"], "count": 1,
               "event": {"kind": "net.dns", "qname": f"<b>x{i}</b>.example", "qtype": "A",
                         "src_ip": "10.20.0.10", "dst_ip": "10.20.0.2"}} for i in range(m)]
    entries = [Entry(i, a, t0 + i * 7.0, True) for i, a in enumerate(alerts)]
    hooks = [WebhookConfig(name, ("https://soc.example/hook",), min_severity=sev)
             for name, sev in (("bawaslu", "high"), ("ministry-csirt", "critical"))]
    recipients = [Recipient(h.name, h.urls[0], Path("/nonexistent.db"), h, readable=True)
                  for h in hooks]
    ev = Evidence("tally-01", t0 + m * 7.0, None, None, entries,
                  JournalStatus(Path("alerts.jsonl"), True, "intact"), recipients,
                  AttestationStatus(Path("attestations")), [])
    floor = _best(lambda: json.dumps(alerts, indent=2))
    page = _best(lambda: render(ev))
    size = len(render(ev).encode())
    print(f"report, {m} alerts: json.dumps floor {floor:.3f}s, HTML page {page:.3f}s"
          f" (x{page / floor:.2f} of the floor), {size / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=100_000)
    ap.add_argument("--alerts", type=int, default=5_000)
    args = ap.parse_args()
    bench_merkle(args.leaves)
    bench_report(args.alerts)


if __name__ == "__main__":
    main()
