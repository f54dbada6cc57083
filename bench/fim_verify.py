"""Checking an unchanged tree: `sentinel baseline verify` vs `aide --check`.

20,000 small files (1-16 KiB, in 200 directories) under a temp dir deleted
afterwards. Both tools first record the tree (`baseline init`, `aide --init`),
then check it unchanged; both re-read and re-hash every file (sha256) and
compare the same attributes. Page cache warm for both; runs interleaved so
background load hits both alike; the median of each is kept. Also prints how
long opening (and verifying every record of) the baseline takes.

Goal (issue 5): verify <= 0.5x AIDE's time.
Run: .venv/bin/python bench/fim_verify.py [--files 20000] [--runs 5]
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


def make_tree(root: Path, n: int) -> None:
    rng = random.Random(7)
    block = rng.randbytes(16 * 1024)
    for i in range(n):
        d = root / f"d{i % 200:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(i.to_bytes(4, "little") + block[: rng.randint(1, 16) * 1024])


def run(cmd: list[str], ok: tuple[int, ...] = (0,)) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if proc.returncode not in ok:
        sys.exit(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("aide") is None:
        sys.exit("needs aide (Debian package aide)")
    tmp = Path(tempfile.mkdtemp(prefix="fim-verify-"))
    try:
        tree = tmp / "tree"
        make_tree(tree, args.files)
        cfg = tmp / "config.yaml"
        cfg.write_text(f"host: {{name: bench, addresses: [127.0.0.1]}}\nstate_dir: {tmp}/state\n"
                       f"fim:\n  paths: [{{path: {tree}}}]\n")
        aide_conf = tmp / "aide.conf"
        aide_conf.write_text(
            f"database_in=file:{tmp}/aide.db\ndatabase_out=file:{tmp}/aide.db.new\n"
            "gzip_dbout=no\nreport_url=stdout\n"
            "Same = p+u+g+s+i+m+l+ftype+sha256\n"
            f"{tree} Same\n")
        sentinel = [sys.executable, "-m", "sentinel", "baseline"]
        run([*sentinel, "init", "-c", str(cfg)])
        run(["aide", "--init", "-c", str(aide_conf)])
        os.replace(tmp / "aide.db.new", tmp / "aide.db")
        cores = os.cpu_count() or 1
        ours: list[float] = []
        aide1: list[float] = []
        aiden: list[float] = []
        for _ in range(args.runs):
            ours.append(run([*sentinel, "verify", "-c", str(cfg), "--events"]))
            aide1.append(run(["aide", "--check", "-c", str(aide_conf)]))
            aiden.append(run(["aide", "--check", "-c", str(aide_conf), f"--workers={cores}"]))
        t_ours, t_a1, t_an = (statistics.median(x) for x in (ours, aide1, aiden))
        best = min(t_a1, t_an)
        print(f"tree: {args.files} unchanged files; {cores} cores; median of {args.runs} runs")
        print(f"  sentinel baseline verify          {t_ours:7.3f} s")
        print(f"  aide --check (default workers)    {t_a1:7.3f} s")
        print(f"  aide --check --workers={cores}          {t_an:7.3f} s")
        ratio = t_ours / best
        print(f"verify / AIDE (its faster run): {ratio:.2f}x the time (goal <= 0.5x)"
              f" {'MET' if ratio <= 0.5 else 'NOT MET'}")
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from sentinel.config_reader import load_config
        from sentinel.keys import load_key
        from sentinel.sources.fim import Baseline

        config = load_config(cfg)
        key = load_key(config.fim.key, config.state_dir, create=False, what="fim")
        t = time.perf_counter()
        Baseline.open(config.in_state(config.fim.baseline), key).close()
        print(f"baseline open + verify of {args.files + 201} records:"
              f" {(time.perf_counter() - t) * 1000:.0f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
