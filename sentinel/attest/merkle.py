"""The Merkle tree over the baseline's file records, and inclusion proofs.

The tree is the one of RFC 6962 §2.1 (also RFC 9162 §2.1), so anyone can
rebuild a root or check a proof with a few lines in any language:

* **Leaves**, one per baseline record, in the baseline's order (sorted by
  path)::

      leaf = SHA-256(0x00 || canonical_json({"gid", "mode", "path", "sha256", "target",
                                             "type", "uid"}))

  ``canonical_json`` is :func:`canonical_json`: keys sorted, no whitespace,
  every non-ASCII character written as a ``\\uXXXX`` escape (so the bytes are
  pure ASCII), integers in decimal. ``mode`` is the permission bits as an
  integer (493 for 0755; 2541 for 04755), ``uid``/``gid`` numeric, ``sha256``
  the content's lower-case hex digest, or ``null`` for what has no content
  hash (a directory, a symlink, an unreadable file). ``type`` is ``file``,
  ``dir``, ``symlink``, ``fifo``, ``socket``, ``char`` or ``block``;
  ``target`` a symlink's target as stored (never followed), else ``null`` —
  without them, re-pointing a watched link at another binary, or swapping a
  file for a link, would leave the root unchanged. ``path`` and ``target``
  are the name's bytes as UTF-8 text with each backslash written ``\\\\`` and
  each byte that is not valid UTF-8 written ``\\xHH``
  (:func:`sentinel.events.escaped_name`): one text per name, so two files
  never share a leaf path.
* **Nodes**: ``SHA-256(0x01 || left || right)`` over the two 32-byte children.
* **Odd counts** the RFC 6962 way: a tree of n > 1 leaves is split at the
  largest power of two k < n; the left k leaves form a complete subtree. Built
  bottom up, this is exactly "pair the nodes of a level left to right; an
  unpaired last node moves up a level unchanged" — it is never duplicated
  (duplication would let two different leaf lists share a root).
* The empty tree's root is ``SHA-256("")``.

An **inclusion proof** for leaf ``index`` of a tree of ``tree_size`` leaves is
the list of sibling hashes from the leaf up (RFC 6962's audit path). To check
it, walk up with ``i = index, n = tree_size, h = leaf``: while ``n > 1``, if
``i`` is odd the next proof hash ``p`` is on the left (``h = node(p, h)``);
else if ``i + 1 < n`` it is on the right (``h = node(h, p)``); else ``i`` is
the unpaired last node and no hash is used. Then ``i //= 2``,
``n = (n + 1) // 2``. The proof is good when every hash was used and ``h``
equals the root.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sentinel.events import escaped_name

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_FIELDS = ("gid", "mode", "path", "sha256", "target", "type", "uid")


class ProofError(Exception):
    """A proof or leaf is malformed or does not fit its tree; the message says how."""


class FileRecord(Protocol):
    """What a leaf needs from a baseline record."""

    @property
    def path(self) -> Any: ...
    @property
    def sha256(self) -> Any: ...
    @property
    def mode(self) -> Any: ...
    @property
    def uid(self) -> Any: ...
    @property
    def gid(self) -> Any: ...
    @property
    def type(self) -> Any: ...
    @property
    def target(self) -> Any: ...


def canonical_json(value: Any) -> bytes:
    """The one byte form of ``value`` that is hashed and signed (ASCII only)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def leaf_fields(record: FileRecord) -> dict[str, Any]:
    """The leaf's fields of a baseline record, as plain JSON values."""
    sha = record.sha256
    return {
        "path": escaped_name(record.path),
        "sha256": sha.hex() if isinstance(sha, bytes) else (str(sha) if sha else None),
        "mode": int(record.mode),
        "uid": int(record.uid),
        "gid": int(record.gid),
        "type": str(record.type),
        "target": None if record.target is None else escaped_name(record.target),
    }


def check_leaf(fields: Any) -> dict[str, Any]:
    """``fields`` as a leaf mapping, or ProofError saying what is wrong."""
    if not isinstance(fields, dict) or set(fields) != set(LEAF_FIELDS):
        msg = f"a leaf has exactly the fields {', '.join(LEAF_FIELDS)}"
        raise ProofError(msg)
    if (not isinstance(fields["path"], str) or not isinstance(fields["type"], str)
            or not isinstance(fields["sha256"], str | None)
            or not isinstance(fields["target"], str | None)):
        msg = "a leaf's path and type are strings, its sha256 and target a string or null"
        raise ProofError(msg)
    for k in ("mode", "uid", "gid"):
        if isinstance(fields[k], bool) or not isinstance(fields[k], int):
            msg = f"a leaf's {k} is an integer"
            raise ProofError(msg)
    return fields


def leaf_hash(fields: dict[str, Any]) -> bytes:
    """``SHA-256(0x00 || canonical_json(fields))``."""
    return hashlib.sha256(LEAF_PREFIX + canonical_json(fields)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


class MerkleTree:
    """Every level of the tree, so that any leaf's proof is a walk up."""

    def __init__(self, leaves: Sequence[dict[str, Any]]) -> None:
        self.leaves = list(leaves)
        level = [leaf_hash(f) for f in self.leaves]
        self._index = {f["path"]: i for i, f in enumerate(self.leaves)}
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])  # the unpaired last node moves up unchanged
            self.levels.append(nxt)
            level = nxt

    @classmethod
    def from_records(cls, records: Iterable[FileRecord]) -> MerkleTree:
        """The tree over baseline records, sorted by path (as the baseline yields them)."""
        leaves = sorted((leaf_fields(r) for r in records), key=lambda f: f["path"])
        return cls(leaves)

    def __len__(self) -> int:
        return len(self.leaves)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.leaves else EMPTY_ROOT

    def index_of(self, path: str) -> int | None:
        """The leaf of ``path`` (as the OS names it: bytes, or text as ``os`` gives it)."""
        return self._index.get(escaped_name(path))

    def proof(self, index: int) -> list[bytes]:
        """The audit path of leaf ``index``, from the leaf's sibling up."""
        if not 0 <= index < len(self.leaves):
            msg = f"leaf index {index} is outside a tree of {len(self.leaves)} leaves"
            raise IndexError(msg)
        out: list[bytes] = []
        i = index
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            i //= 2
        return out


def root_from_proof(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """The root the audit path leads to; ProofError if the path does not fit the tree."""
    if not 0 <= index < tree_size:
        msg = f"leaf index {index} is outside a tree of {tree_size} leaves"
        raise ProofError(msg)
    h, i, n = leaf, index, tree_size
    used = 0
    while n > 1:
        if i % 2 == 1 or i + 1 < n:
            if used == len(proof):
                msg = "the proof is too short for this leaf index and tree size"
                raise ProofError(msg)
            p = proof[used]
            used += 1
            h = node_hash(p, h) if i % 2 == 1 else node_hash(h, p)
        i //= 2
        n = (n + 1) // 2
    if used != len(proof):
        msg = "the proof is too long for this leaf index and tree size"
        raise ProofError(msg)
    return h


@dataclass(frozen=True)
class InclusionProof:
    """A leaf, where it sits, and the hashes that lead from it to the root."""

    leaf: dict[str, Any]
    index: int
    tree_size: int
    path: tuple[bytes, ...]

    def root(self) -> bytes:
        return root_from_proof(leaf_hash(self.leaf), self.index, self.tree_size, self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf,
            "index": self.index,
            "tree_size": self.tree_size,
            "audit_path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_json(cls, data: Any) -> InclusionProof:
        """Parse a proof's JSON; ProofError says what is malformed."""
        if not isinstance(data, dict):
            msg = "a proof is a JSON object"
            raise ProofError(msg)
        try:
            leaf = check_leaf(data["leaf"])
            index, size, path = data["index"], data["tree_size"], data["audit_path"]
        except KeyError as exc:
            msg = f"the proof has no {exc.args[0]!r}"
            raise ProofError(msg) from None
        if not (isinstance(index, int) and isinstance(size, int) and isinstance(path, list)):
            msg = "index and tree_size are integers and audit_path a list of hex hashes"
            raise ProofError(msg)
        try:
            hashes = tuple(bytes.fromhex(h) for h in path)
        except (TypeError, ValueError):
            msg = "audit_path holds 64-digit hex hashes"
            raise ProofError(msg) from None
        if any(len(h) != 32 for h in hashes):
            msg = "audit_path holds 64-digit hex hashes"
            raise ProofError(msg)
        return cls(leaf, index, size, hashes)

    @classmethod
    def of(cls, tree: MerkleTree, index: int) -> InclusionProof:
        return cls(tree.leaves[index], index, len(tree), tuple(tree.proof(index)))
