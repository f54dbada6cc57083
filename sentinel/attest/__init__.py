"""Public attestations: signed, chained statements of what this server runs.

What the daemon and the commands use::

    attestor = Attestor(config, metrics, rules_digest=rules.digest,
                        journal_head=delivery.journal_head)
    attestor.maybe_attest(now)          # about once a second; a Path when one was written

    generate_keypair(out_dir)           # attest.key (0600) and attest.pub
    tree = load_tree(config)            # MerkleTree over the baseline's file records
    proof = InclusionProof.of(tree, tree.index_of("/opt/tally/bin/tally"))
    report = verify_chain(att, candidates, public_key)

The formats are in :mod:`sentinel.attest.merkle` and
:mod:`sentinel.attest.statement`, and for outsiders in the README.
"""

from __future__ import annotations

from sentinel.attest.attestor import (
    AttestError,
    Attestor,
    baseline_summary,
    build_statement,
    load_tree,
    read_journal_head,
)
from sentinel.attest.keys import (
    AttestKeyError,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
)
from sentinel.attest.merkle import InclusionProof, MerkleTree, canonical_json
from sentinel.attest.statement import (
    GENESIS,
    Attestation,
    AttestationError,
    ChainReport,
    Store,
    load_file,
    load_folder,
    sign,
    verify_chain,
)

__all__ = [
    "GENESIS",
    "AttestError",
    "AttestKeyError",
    "Attestation",
    "AttestationError",
    "Attestor",
    "ChainReport",
    "InclusionProof",
    "MerkleTree",
    "Store",
    "baseline_summary",
    "build_statement",
    "canonical_json",
    "generate_keypair",
    "key_id",
    "load_file",
    "load_folder",
    "load_private_key",
    "load_public_key",
    "load_tree",
    "read_journal_head",
    "sign",
    "verify_chain",
]
