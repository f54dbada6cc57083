"""Helpers for the attestation tests: real files and a real signed baseline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sentinel.sources.fim.baseline import Baseline, FileRecord

BASELINE_KEY = ("5e" * 32).encode()  # the fim key is the key file's text


def record_of(path: Path) -> FileRecord:
    """The baseline record of a real file, as the FIM source would make it."""
    st = path.lstat()
    return FileRecord(str(path), "file", hashlib.sha256(path.read_bytes()).hexdigest(),
                      st.st_size, st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_ino,
                      st.st_mtime_ns, None)


def make_files(root: Path, n: int) -> list[Path]:
    """``n`` real files with distinct contents and a few distinct modes."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = root / f"bin-{i:04d}"
        p.write_bytes(f"tally component {i}\n".encode() * (i + 1))
        os.chmod(p, (0o755, 0o644, 0o4755, 0o600)[i % 4])
        out.append(p)
    return out


def write_baseline(state_dir: Path, files: list[Path]) -> Path:
    """A signed baseline of ``files`` at ``state_dir/baseline.db``, key in baseline.key."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "baseline.key").write_bytes(BASELINE_KEY + b"\n")
    os.chmod(state_dir / "baseline.key", 0o600)
    path = state_dir / "baseline.db"
    path.unlink(missing_ok=True)
    Baseline.create(path, BASELINE_KEY, [record_of(f) for f in files]).close()
    return path
