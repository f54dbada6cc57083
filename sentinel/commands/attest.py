"""`sentinel attest`: write, verify and prove public attestations.

Exit codes: 0 done / valid, 1 verification failed (a signature, the chain, a
proof or a local copy does not match), 2 error (bad config, unreadable file,
no key, no baseline).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sentinel.commands import add_config_arg, subparser
from sentinel.config import DEFAULT_CONFIG
from sentinel.config_reader import load_config

PROOF_FORMAT = "sentinel-inclusion-proof/1"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "attest",
        "write, verify and prove signed public attestations",
        "Write a signed attestation of this server now (the baseline's Merkle root, the rules"
        " digest, the journal head, the schedules in force), chained to the previous one in"
        " attest.dir.\n\n"
        "attest keygen             make the Ed25519 key pair (private key 0600)\n"
        "attest verify FILE        check an attestation's signature and its chain\n"
        "attest prove PATH         print an inclusion proof for one baselined file\n"
        "attest verify-proof PROOF check a proof against a signed attestation\n\n"
        "Exit 0 done or valid, 1 verification failed, 2 error.",
        "sentinel attest -c /etc/sentinel/config.yaml -o /srv/public/latest.json",
    )
    add_config_arg(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="also write a copy of the new attestation to FILE ('-': stdout)")
    p.set_defaults(func=write)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))

    k = subparser(actions, "keygen", "make the attestation key pair",
                  "Make a new Ed25519 key pair: the private key (mode 0600) at attest.key_file"
                  " (or DIR/attest.key), the public key beside it as .pub. Publish the .pub;"
                  " an existing key is never overwritten.",
                  "sentinel attest keygen --out-dir /etc/sentinel/keys")
    _sub_config_arg(k)
    k.add_argument("--out-dir", type=Path, metavar="DIR",
                   help="write DIR/attest.key and DIR/attest.pub instead of the configured path")
    k.set_defaults(func=keygen)

    v = subparser(actions, "verify", "check an attestation's signature and chain",
                  "Check FILE's Ed25519 signature with the published public key, then follow"
                  " its chain back to the first attestation through the other attestations in"
                  " FILE's folder (or the other lines of FILE). Needs no config and no access"
                  " to the server.",
                  "sentinel attest verify attestations/attestation-00000042.json"
                  " --pubkey attest.pub")
    v.add_argument("file", type=Path, metavar="FILE",
                   help="an attestation (.json or .jsonl), or a folder of them (its latest)")
    v.add_argument("--pubkey", type=Path, required=True, metavar="KEY",
                   help="the published public key (PEM)")
    v.add_argument("--no-chain", action="store_true",
                   help="check only FILE's signature, not the chain behind it")
    v.set_defaults(func=verify)

    pr = subparser(actions, "prove", "print an inclusion proof for one file",
                   "Print (as JSON) the proof that PATH, with its sha256, mode, uid and gid, is"
                   " a leaf of the baseline's Merkle root signed in an attestation (default:"
                   " the latest in attest.dir). Give the proof, the attestation and the public"
                   " key to a witness.",
                   "sentinel attest prove /opt/tally/bin/tally -c /etc/sentinel/config.yaml"
                   " > tally.proof.json")
    pr.add_argument("path", metavar="PATH", help="the file, as the baseline names it")
    _sub_config_arg(pr)
    pr.add_argument("--attestation", type=Path, metavar="FILE",
                    help="prove against this attestation (default: the latest written)")
    pr.add_argument("-o", "--output", type=Path, metavar="FILE",
                    help="write the proof to FILE instead of stdout")
    pr.set_defaults(func=prove)

    vp = subparser(actions, "verify-proof", "check an inclusion proof",
                   "Check that PROOF leads to the Merkle root of a validly signed attestation,"
                   " and with --file that a local copy has exactly the attested sha256. Needs no"
                   " config and no access to the server.",
                   "sentinel attest verify-proof tally.proof.json --attestation"
                   " attestation-00000042.json --pubkey attest.pub --file ./tally")
    vp.add_argument("proof", type=Path, metavar="PROOF", help="the proof from `attest prove`")
    vp.add_argument("--attestation", type=Path, required=True, metavar="FILE")
    vp.add_argument("--pubkey", type=Path, required=True, metavar="KEY")
    vp.add_argument("--file", type=Path, metavar="LOCAL_COPY",
                    help="a copy of the file to compare with the attested sha256")
    vp.set_defaults(func=verify_proof)


def _sub_config_arg(p: argparse.ArgumentParser) -> None:
    """``-c`` on an action too; SUPPRESS keeps a ``-c`` given before the action
    (``sentinel attest -c FILE prove …``) from being reset to the default."""
    p.add_argument(
        "-c", "--config", type=Path, default=argparse.SUPPRESS, metavar="CONFIG",
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )


def _fail(cmd: str, message: object) -> int:
    print(f"sentinel attest{cmd}: {message}", file=sys.stderr)
    return 2


def write(args: argparse.Namespace) -> int:
    from sentinel.attest import AttestError, Attestor
    from sentinel.attest.attestor import read_journal_head
    from sentinel.engine import load_rules
    from sentinel.metrics import Metrics

    config = load_config(args.config, secrets=False)
    rules = load_rules(config)
    attestor = Attestor(config, Metrics(), rules_digest=rules.digest,
                        journal_head=lambda: read_journal_head(config))
    if not attestor.key_path.exists():
        return _fail("", f"no attestation key at {attestor.key_path}; make one with"
                     " `sentinel attest keygen`")
    try:
        path = attestor.write(time.time(), "manual")
    except (AttestError, OSError) as exc:
        return _fail("", exc)
    if args.output is not None:
        data = path.read_bytes()
        if str(args.output) == "-":
            sys.stdout.write(data.decode("ascii"))
            return 0
        try:
            args.output.write_bytes(data)
        except OSError as exc:
            return _fail("", f"{args.output}: cannot write: {exc.strerror}")
    print(path)
    return 0


def keygen(args: argparse.Namespace) -> int:
    from sentinel.attest import AttestKeyError, generate_keypair, key_id, load_public_key

    if args.out_dir is not None:
        private = args.out_dir / "attest.key"
    else:
        config = load_config(args.config, secrets=False)
        private = config.in_state(config.attest.key_file)
    try:
        priv, pub = generate_keypair(private)
        kid = key_id(load_public_key(pub))
    except AttestKeyError as exc:
        return _fail(" keygen", exc)
    print(f"private key: {priv} (mode 0600; keep it on this server only)")
    print(f"public key:  {pub} (publish this file)")
    print(f"key id:      {kid}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from sentinel.attest import (
        AttestationError,
        AttestKeyError,
        load_file,
        load_folder,
        load_public_key,
        verify_chain,
    )

    try:
        public = load_public_key(args.pubkey)
        if args.file.is_dir():
            atts = load_folder(args.file)
            if not atts:
                return _fail(" verify", f"{args.file}: no attestation-*.json files")
            candidates = atts
        else:
            atts = load_file(args.file)
            candidates = atts if args.no_chain else [*load_folder(args.file.parent), *atts]
    except (AttestKeyError, AttestationError) as exc:
        return _fail(" verify", exc)
    target = max(atts, key=lambda a: a.sequence)
    report = verify_chain(target, candidates, public, follow=not args.no_chain)
    if report.checked:
        first, last = report.checked[-1], report.checked[0]
        span = (f"sequence {last.sequence}" if first is last else
                f"sequences {first.sequence}..{last.sequence}")
        print(f"{span}: {len(report.checked)} signature(s) OK"
              f"{', each linked to the one before' if len(report.checked) > 1 else ''}")
    for problem in report.problems:
        print(problem)
    for warning in report.warnings:
        print(f"warning: {warning}")
    st = target.statement
    base = st.get("baseline") or {}
    journal = st.get("journal") or {}
    active = [n for n, s in (st.get("schedules") or {}).items() if s.get("active")]
    print(f"host {st.get('host')}, sentinel {st.get('sentinel_version')}, time {st.get('time')}")
    print(f"baseline {base.get('status')}: merkle root {base.get('merkle_root')},"
          f" {base.get('leaf_count')} files")
    print(f"rules digest {st.get('rules_digest')}")
    print(f"journal {journal.get('records')} records, head {journal.get('head')}")
    print(f"schedules in force: {', '.join(active) or 'none'}")
    if not report.ok:
        print(f"{args.file}: INVALID")
        return 1
    what = ("signature only (--no-chain)" if args.no_chain else
            f"chain of {len(report.checked)} back to sequence 0")
    print(f"{args.file}: VALID: sequence {target.sequence}, {what},"
          f" key {target.public_key_id}")
    return 0


def prove(args: argparse.Namespace) -> int:
    from sentinel.attest import AttestationError, AttestError, InclusionProof, Store, load_file
    from sentinel.attest import load_tree as _load_tree

    config = load_config(args.config, secrets=False)
    try:
        if args.attestation is not None:
            att = max(load_file(args.attestation), key=lambda a: a.sequence)
        else:
            found = Store(config.in_state(config.attest.dir)).latest()
            if found is None:
                return _fail(" prove", f"no attestation in {config.in_state(config.attest.dir)}"
                             "; write one with `sentinel attest`")
            att = found
        tree = _load_tree(config)
    except (AttestationError, AttestError) as exc:
        return _fail(" prove", exc)
    base = att.statement.get("baseline") or {}
    if base.get("merkle_root") != tree.root.hex() or base.get("leaf_count") != len(tree):
        return _fail(" prove", f"the baseline now has root {tree.root.hex()} ({len(tree)} files)"
                     f" but attestation {att.sequence} signed {base.get('merkle_root')}"
                     f" ({base.get('leaf_count')} files): the baseline changed since; write a"
                     " new attestation with `sentinel attest` and prove against it")
    path = os.path.abspath(args.path)
    index = tree.index_of(path)
    if index is None:
        return _fail(" prove", f"{path} is not in the baseline ({len(tree)} files)")
    out: dict[str, Any] = {
        "format": PROOF_FORMAT,
        "attestation": {"sequence": att.sequence, "hash": att.digest(),
                        "merkle_root": tree.root.hex()},
        **InclusionProof.of(tree, index).to_json(),
    }
    text = json.dumps(out, indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(" prove", f"{args.output}: cannot write: {exc.strerror}")
    return 0


def verify_proof(args: argparse.Namespace) -> int:
    from sentinel.attest import (
        AttestationError,
        AttestKeyError,
        InclusionProof,
        load_file,
        load_public_key,
        verify_chain,
    )
    from sentinel.attest.merkle import ProofError

    try:
        public = load_public_key(args.pubkey)
        atts = load_file(args.attestation)
        raw = json.loads(args.proof.read_text(encoding="utf-8"))
        proof = InclusionProof.from_json(raw)
    except (AttestKeyError, AttestationError) as exc:
        return _fail(" verify-proof", exc)
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(" verify-proof", f"{args.proof}: cannot read: {exc}")
    except (ValueError, ProofError) as exc:
        return _fail(" verify-proof", f"{args.proof}: not a proof: {exc}")
    want = (raw.get("attestation") or {}).get("hash")
    att = next((a for a in atts if a.digest() == want), max(atts, key=lambda a: a.sequence))
    ok = True
    sig = verify_chain(att, [], public, follow=False)
    if sig.ok:
        print(f"signature: OK: attestation {att.sequence} of {att.statement.get('host')} at"
              f" {att.statement.get('time')}, key {att.public_key_id}")
    else:
        print(f"signature: FAILED: {'; '.join(sig.problems)}")
        ok = False
    base = att.statement.get("baseline") or {}
    leaf = proof.leaf
    try:
        root = proof.root().hex()
    except ProofError as exc:
        root, why = "", str(exc)
    else:
        why = (f"the proof leads to root {root}, the attestation signed"
               f" {base.get('merkle_root')}")
    if root and root == base.get("merkle_root") and proof.tree_size == base.get("leaf_count"):
        print(f"inclusion: OK: {leaf['path']} (sha256 {leaf['sha256']}, mode {leaf['mode']:04o},"
              f" uid {leaf['uid']}, gid {leaf['gid']}) is file {proof.index + 1} of"
              f" {proof.tree_size} under root {root}")
    else:
        if root and proof.tree_size != base.get("leaf_count"):
            why = (f"the proof is for a tree of {proof.tree_size} files, the attestation"
                   f" signed {base.get('leaf_count')}")
        print(f"inclusion: FAILED: {why}")
        ok = False
    if args.file is not None:
        try:
            digest = _sha256_file(args.file)
        except OSError as exc:
            return _fail(" verify-proof", f"{args.file}: cannot read: {exc.strerror}")
        if digest == leaf["sha256"]:
            print(f"local copy: OK: {args.file} has sha256 {digest}, as attested")
        else:
            print(f"local copy: FAILED: {args.file} has sha256 {digest}, the attested file"
                  f" has {leaf['sha256']}")
            ok = False
    print("VALID" if ok else "INVALID")
    return 0 if ok else 1


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
