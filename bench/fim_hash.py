"""Hashing a tree: `sentinel baseline init` vs `sha256sum` vs `aide --init`.

A generated tree of 2,000 files, about 1 GiB, mixed sizes (most small, some
MiB-sized, a few large), under a temp dir deleted afterwards. Every tool reads
the same files from a warm page cache (one untimed read first); runs are
interleaved and the median of each tool is kept. AIDE hashes the same attributes as the
baseline (permissions, owner, group, size, inode, mtime, link target, type,
sha256), once with its default workers and once with one per core.

Goals (issue 5): sentinel >= 5x sha256sum and >= 2x AIDE.
Run: .venv/bin/python bench/fim_hash.py [--files 2000] [--gib 1.0] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_PY = sys.executable


def sizes(n: int, total: int, rng: random.Random) -> list[int]:
    """Mostly small files, some medium, a few large: shaped like a software tree."""
    out = []
    for i in range(n):
        if i % 100 == 0:
            out.append(rng.randint(20, 60) * 2**20)  # 1 %: 20-60 MiB
        elif i % 10 == 0:
            out.append(rng.randint(1, 4) * 2**20)  # 9 %: 1-4 MiB
        else:
            out.append(rng.randint(1, 64) * 1024)  # 90 %: 1-64 KiB
    scale = total / sum(out)
    return [max(1, int(s * scale)) for s in out]


def make_tree(root: Path, n: int, total: int) -> list[Path]:
    rng = random.Random(5)
    block = rng.randbytes(4 * 2**20)
    files = []
    for i, size in enumerate(sizes(n, total, rng)):
        d = root / f"pkg{i % 40:02d}" / f"sub{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"file{i:05d}.bin"
        with p.open("wb") as fh:
            fh.write(i.to_bytes(8, "little"))  # distinct contents
            left = size
            while left > 0:
                chunk = block[: min(left, len(block))]
                fh.write(chunk)
                left -= len(chunk)
        files.append(p)
    return files


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("aide") is None or shutil.which("sha256sum") is None:
        sys.exit("needs aide (Debian package aide) and sha256sum")
    tmp = Path(tempfile.mkdtemp(prefix="fim-hash-"))
    try:
        tree = tmp / "tree"
        files = make_tree(tree, args.files, int(args.gib * 2**30))
        total = sum(f.stat().st_size for f in files)
        state = tmp / "state"
        cfg = tmp / "config.yaml"
        cfg.write_text(f"host: {{name: bench, addresses: [127.0.0.1]}}\nstate_dir: {state}\n"
                       f"fim:\n  paths: [{{path: {tree}}}]\n")
        listing = tmp / "files.txt"
        listing.write_bytes(b"\0".join(os.fsencode(f) for f in files))
        aide_conf = tmp / "aide.conf"
        aide_conf.write_text(
            f"database_in=file:{tmp}/aide.db\ndatabase_out=file:{tmp}/aide.db.new\n"
            "gzip_dbout=no\nreport_url=stdout\n"
            "Same = p+u+g+s+i+m+l+ftype+sha256\n"
            f"{tree} Same\n")
        for f in files:  # warm the page cache so every tool reads from memory
            f.read_bytes()
        cores = os.cpu_count() or 1
        print(f"tree: {len(files)} files, {total / 2**30:.2f} GiB; {cores} cores; "
              f"median of {args.runs} runs")
        cmds = {
            "sentinel": [VENV_PY, "-m", "sentinel", "baseline", "init", "-c", str(cfg)],
            "sha": ["sh", "-c", f"xargs -0 sha256sum < {listing}"],
            "aide1": ["aide", "--init", "-c", str(aide_conf)],
            "aiden": ["aide", "--init", "-c", str(aide_conf), f"--workers={cores}"],
        }
        runs: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.runs):  # interleaved, so background load hits every tool alike
            for k, cmd in cmds.items():
                runs[k].append(timed(cmd))
        t_sentinel, t_sha, t_aide1, t_aide = (statistics.median(runs[k]) for k in cmds)
        best_aide = min(t_aide1, t_aide)
        for name, t in (("sentinel baseline init", t_sentinel), ("sha256sum", t_sha),
                        ("aide --init (default workers)", t_aide1),
                        (f"aide --init --workers={cores}", t_aide)):
            print(f"  {name:32s} {t:7.3f} s  {total / 2**20 / t:8.0f} MiB/s")
        r_sha = t_sha / t_sentinel
        r_aide = best_aide / t_sentinel
        print(f"sentinel vs sha256sum: {r_sha:.2f}x faster (goal >= 5x)"
              f" {'MET' if r_sha >= 5 else 'NOT MET'}")
        print(f"sentinel vs AIDE (its faster run): {r_aide:.2f}x faster (goal >= 2x)"
              f" {'MET' if r_aide >= 2 else 'NOT MET'}")
        # The ceiling: per core, the sha256 sentinel uses (OpenSSL) against
        # coreutils' sha256sum, both on data in memory (best of 5).
        import hashlib

        buf = os.urandom(64 * 2**20)
        big = tmp / "one-core.bin"
        big.write_bytes(buf)
        per_core = sha_core = 0.0
        for _ in range(5):
            t = time.perf_counter()
            hashlib.sha256(buf).digest()
            per_core = max(per_core, len(buf) / (time.perf_counter() - t))
            t = time.perf_counter()
            subprocess.run(["sha256sum", str(big)], check=True, stdout=subprocess.DEVNULL)
            sha_core = max(sha_core, len(buf) / (time.perf_counter() - t))
        ceiling = cores * per_core / sha_core
        print(f"one core: OpenSSL sha256 {per_core / 2**20:.0f} MiB/s, sha256sum"
              f" {sha_core / 2**20:.0f} MiB/s; so {cores} cores can be at most"
              f" {ceiling:.1f}x sha256sum; load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
