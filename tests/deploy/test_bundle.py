"""The offline bundle: built with its checksums signed, it installs with no network
at all (inside a network namespace with no interfaces), then passes ``check`` and
the daemon it installed starts to READY.

Building the bundle fetches the dependencies' wheels (from the package index, or
pip's cache); everything after that runs with the network cut off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.support import free_port
from tests.test_daemon import NotifySocket

BUNDLE = REPO / "deploy" / "bundle.sh"


def _run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the unpacked bundle folder, the public key), built once for this module."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, staged root owned by another user)")
    for tool in ("openssl", "unshare", "systemd-sysusers"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    work = tmp_path_factory.mktemp("bundle")
    key = work / "release.pem"
    _run("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key), check=True)
    out = work / "dist"
    proc = _run("bash", str(BUNDLE), "--sign-key", str(key), "--out", str(out),
                env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tarball,) = out.glob("sentinel-*-bundle.tar.gz")
    (pub,) = out.glob("sentinel-*-bundle.pub")
    with tarfile.open(tarball) as tar:
        tar.extractall(work / "unpacked", filter="tar")
    (folder,) = (work / "unpacked").iterdir()
    return folder, pub


def _verify(folder: Path, pub: Path) -> tuple[int, int]:
    sig = _run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
               "-in", "SHA256SUMS", "-sigfile", "SHA256SUMS.sig", cwd=folder)
    sums = _run("sha256sum", "--strict", "--quiet", "-c", "SHA256SUMS", cwd=folder)
    return sig.returncode, sums.returncode


def test_bundle_holds_hashed_wheels_and_signed_checksums(bundle: tuple[Path, Path]) -> None:
    folder, pub = bundle
    reqs = (folder / "requirements.txt").read_text().splitlines()
    wheels = sorted((folder / "wheels").glob("*.whl"))
    assert len(reqs) == len(wheels) > 5
    assert all("==" in r and "--hash=sha256:" in r for r in reqs)
    assert any(r.startswith("sentinel==") for r in reqs)
    for part in ("rules", "deploy/install.sh", "deploy/systemd/sentinel.service",
                 "config.example.yaml"):
        assert (folder / part).exists(), part
    assert _verify(folder, pub) == (0, 0)


def test_a_changed_file_or_checksum_list_fails_verification(
        bundle: tuple[Path, Path], tmp_path: Path) -> None:
    folder, pub = bundle
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    rule = sorted((copy / "rules").glob("*.yaml"))[0]
    rule.write_text(rule.read_text() + "\n# planted\n")
    assert _verify(copy, pub)[1] != 0
    # re-listing the planted file's hash breaks the signature instead
    _run("bash", "-c", "sha256sum $(cut -c67- SHA256SUMS) > SHA256SUMS", cwd=copy, check=True)
    assert _verify(copy, pub)[0] != 0


def _site_config(path: Path, root: Path, state: Path, port: int) -> None:
    cfg = yaml.safe_load((root / "etc/sentinel/config.yaml").read_text())
    watched = path.parent / "watched"
    watched.mkdir()
    (watched / "tally-server").write_bytes(b"\x7fELF")
    cfg["state_dir"] = str(state)
    cfg["network"]["interfaces"] = ["lo"]
    cfg["fim"]["paths"] = [{"path": str(watched), "recursive": True, "tags": ["tally-binaries"]}]
    cfg["fim"]["key_file"] = str(path.parent / "baseline.key")
    cfg["rules"]["paths"] = [str(root / "etc/sentinel/rules")]
    cfg["outputs"]["journal"]["key_file"] = str(path.parent / "journal.key")
    cfg["outputs"]["metrics"] = {"listen": f"127.0.0.1:{port}"}
    cfg["outputs"]["webhooks"] = []
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_bundle_installs_offline_then_checks_and_starts(
        bundle: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = bundle
    root = tmp_path / "root"
    venv = root / "opt" / "sentinel"
    # no network at all: a fresh network namespace whose only interface, lo, is down
    proc = _run("unshare", "--net", "bash", str(folder / "deploy" / "install.sh"),
                "--root", str(root), "--venv", str(venv))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "offline, every hash checked" in proc.stdout
    sentinel = venv / "bin" / "sentinel"
    assert (root / "usr/local/share/man/man1/sentinel.1").read_text().startswith(".TH SENTINEL")
    assert "complete -o default -F _sentinel sentinel" in (
        root / "usr/share/bash-completion/completions/sentinel").read_text()

    cfg = tmp_path / "config.yaml"
    port = free_port()
    _site_config(cfg, root, tmp_path / "state", port)
    check = _run("unshare", "--net", str(sentinel), "check", "-c", str(cfg))
    assert check.returncode == 0, check.stdout + check.stderr

    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    env.pop("WATCHDOG_USEC", None)
    daemon = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'ip link set lo up && exec "{sentinel}" run -c "{cfg}"'],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        notify.wait_for("READY=1", timeout=60)
    finally:
        daemon.terminate()
        out, err = daemon.communicate(timeout=30)
        notify.close()
    assert daemon.returncode == 0, out[-2000:] + err[-2000:]
