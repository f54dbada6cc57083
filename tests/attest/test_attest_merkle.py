"""The Merkle tree: its exact bytes, RFC 6962 shape, and proofs for every leaf."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from attest_helpers import BASELINE_KEY, make_files, write_baseline

from sentinel.attest.merkle import (
    EMPTY_ROOT,
    InclusionProof,
    MerkleTree,
    ProofError,
    canonical_json,
    leaf_hash,
    root_from_proof,
)
from sentinel.sources.fim.baseline import Baseline

COUNTS = (1, 2, 3, 5, 7, 100)


def _leaf(i: int) -> dict[str, object]:
    return {"path": f"/opt/tally/bin/f{i:03d}", "sha256": hashlib.sha256(b"%d" % i).hexdigest(),
            "mode": 0o755, "uid": 0, "gid": 0, "type": "file", "target": None}


# An independent transcription of RFC 6962 §2.1 (MTH) and §2.1.1 (PATH), recursive
# as the RFC writes them, to check the level-by-level tree against.
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _rfc_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return _sha(b"\x01" + _rfc_mth(leaves[:k]) + _rfc_mth(leaves[k:]))


def _rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_rfc_path(m, leaves[:k]), _rfc_mth(leaves[k:])]
    return [*_rfc_path(m - k, leaves[k:]), _rfc_mth(leaves[:k])]


def test_leaf_bytes_are_sorted_compact_ascii_json() -> None:
    """The hashed leaf is exactly the documented canonical JSON behind a 0x00 byte."""
    fields = {"uid": 0, "sha256": "ab" * 32, "path": "/opt/tally/bin/tally", "gid": 0,
              "mode": 0o755, "type": "file", "target": None}
    want = ('{"gid":0,"mode":493,"path":"/opt/tally/bin/tally","sha256":"' + "ab" * 32
            + '","target":null,"type":"file","uid":0}').encode()
    assert canonical_json(fields) == want
    assert leaf_hash(fields) == hashlib.sha256(b"\x00" + want).digest()
    assert canonical_json({"path": "/opt/hasil-é"}) == b'{"path":"/opt/hasil-\\u00e9"}'


def test_three_leaf_root_matches_the_documented_formula() -> None:
    """root(3) = H(0x01 || H(0x01 || L0 || L1) || L2): the last node is promoted, not doubled."""
    leaves = [_leaf(i) for i in range(3)]
    lh = [hashlib.sha256(b"\x00" + canonical_json(f)).digest() for f in leaves]
    n01 = hashlib.sha256(b"\x01" + lh[0] + lh[1]).digest()
    assert MerkleTree(leaves).root == hashlib.sha256(b"\x01" + n01 + lh[2]).digest()


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert MerkleTree([]).root == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", [*COUNTS, 4, 6, 8, 9, 33])
def test_root_and_every_proof_match_rfc6962(n: int) -> None:
    """Root and audit paths equal the RFC's recursive definitions for every leaf."""
    leaves = [_leaf(i) for i in range(n)]
    tree = MerkleTree(leaves)
    raw = [canonical_json(f) for f in leaves]
    assert tree.root == _rfc_mth(raw)
    for m in range(n):
        assert tree.proof(m) == _rfc_path(m, raw), f"leaf {m} of {n}"
        assert root_from_proof(leaf_hash(leaves[m]), m, n, tree.proof(m)) == tree.root


@pytest.mark.parametrize("n", COUNTS)
def test_every_file_of_a_generated_baseline_has_a_proof(tmp_path: Path, n: int) -> None:
    """Real files -> signed baseline -> tree: each file's proof leads to the root."""
    files = make_files(tmp_path / "opt", n)
    path = write_baseline(tmp_path / "state", files)
    baseline = Baseline.open(path, BASELINE_KEY)
    tree = MerkleTree.from_records(baseline.records())
    baseline.close()
    assert len(tree) == n
    for f in files:
        index = tree.index_of(str(f))
        assert index is not None
        proof = InclusionProof.from_json(InclusionProof.of(tree, index).to_json())
        assert proof.root() == tree.root
        assert proof.leaf["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert proof.leaf["mode"] == f.stat().st_mode & 0o7777


def _forgeries(proof: InclusionProof) -> dict[str, InclusionProof]:
    other_sha = hashlib.sha256(b"a trojaned tally binary").hexdigest()
    out = {
        "other sha256": InclusionProof({**proof.leaf, "sha256": other_sha}, proof.index,
                                       proof.tree_size, proof.path),
        "other mode": InclusionProof({**proof.leaf, "mode": 0o4755}, proof.index,
                                     proof.tree_size, proof.path),
        "other path": InclusionProof({**proof.leaf, "path": "/opt/tally/bin/evil"},
                                     proof.index, proof.tree_size, proof.path),
    }
    if proof.path:
        flipped = bytes([proof.path[0][0] ^ 1]) + proof.path[0][1:]
        out["changed hash"] = InclusionProof(proof.leaf, proof.index, proof.tree_size,
                                             (flipped, *proof.path[1:]))
    if len(proof.path) > 1:
        out["reordered hashes"] = InclusionProof(proof.leaf, proof.index, proof.tree_size,
                                                 tuple(reversed(proof.path)))
    return out


@pytest.mark.parametrize("n", COUNTS)
def test_forged_proofs_do_not_reach_the_root(n: int) -> None:
    """Any change to the leaf or the audit path gives another root or a ProofError."""
    tree = MerkleTree([_leaf(i) for i in range(n)])
    for index in range(n):
        proof = InclusionProof.of(tree, index)
        for name, forged in _forgeries(proof).items():
            try:
                root = forged.root()
            except ProofError:
                continue
            assert root != tree.root, f"{name} for leaf {index} of {n} still verifies"


def test_proof_with_wrong_shape_is_refused() -> None:
    """A proof that is too short, too long or outside the tree raises ProofError."""
    tree = MerkleTree([_leaf(i) for i in range(5)])
    proof = InclusionProof.of(tree, 1)
    lh = leaf_hash(proof.leaf)
    with pytest.raises(ProofError, match="too short"):
        root_from_proof(lh, 1, 5, proof.path[:-1])
    with pytest.raises(ProofError, match="too long"):
        root_from_proof(lh, 1, 5, (*proof.path, proof.path[0]))
    with pytest.raises(ProofError, match="outside"):
        root_from_proof(lh, 5, 5, proof.path)
    for bad in ({"leaf": proof.leaf}, {**proof.to_json(), "audit_path": ["zz"]},
                {**proof.to_json(), "leaf": {"path": "/x"}}, []):
        with pytest.raises(ProofError):
            InclusionProof.from_json(bad)


def test_repointing_a_watched_symlink_changes_the_root(tmp_path: Path) -> None:
    """A link's target and a file's type are in its leaf: re-pointing a link changes the root."""
    from sentinel.sources.fim.scan import snapshot

    (tmp_path / "tally-1.0").write_bytes(b"the real tally\n")
    (tmp_path / "evil").write_bytes(b"the attacker's tally\n")
    link = tmp_path / "tally"
    link.symlink_to("tally-1.0")

    def root() -> tuple[bytes, dict[str, object]]:
        record = snapshot(str(link))
        assert record is not None
        tree = MerkleTree.from_records([record])
        return tree.root, tree.leaves[0]

    before, leaf = root()
    assert leaf["type"] == "symlink" and leaf["target"] == "tally-1.0"
    link.unlink()
    link.symlink_to("evil")
    after, leaf = root()
    assert leaf["target"] == "evil"
    assert after != before
    link.unlink()
    link.symlink_to("tally-1.0")
    assert root()[0] == before


def test_a_leaf_without_type_or_target_is_malformed() -> None:
    """Proofs in the old five-field form are refused, not checked against a weaker leaf."""
    from sentinel.attest.merkle import ProofError, check_leaf

    for missing in ("type", "target"):
        leaf = {k: v for k, v in _leaf(0).items() if k != missing}
        with pytest.raises(ProofError, match="exactly the fields"):
            check_leaf(leaf)
    with pytest.raises(ProofError, match="target a string or null"):
        check_leaf({**_leaf(0), "target": 7})
