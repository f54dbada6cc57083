"""sentinel's native work runs under the unit's seccomp policy.

The unit sets ``SystemCallFilter=@system-service`` minus ``@privileged
@resources``, ``RestrictAddressFamilies=`` and ``MemoryDenyWriteExecute=yes``.
No systemd runs as PID 1 here to start the unit, so sandboxed.py installs the
same seccomp policy itself, built from the sets this machine's
``systemd-analyze syscall-filter`` prints and the unit's own lines, then does
the daemon's native work (imports, crypto, bcrypt, sqlite, inotify, AF_PACKET
capture, netlink, the host's addresses, the metrics endpoint), in a network
namespace of its own and with /proc mounted as the unit mounts it. A control
run without the filter and the /proc view tells apart what the sandbox breaks
from what is unfinished elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.deploy.test_systemd import UNIT, settings

CHILD = Path(__file__).with_name("sandboxed.py")
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


@cache
def syscall_sets() -> dict[str, list[str]]:
    """``systemd-analyze syscall-filter``: set name -> members (syscalls and @sets)."""
    out = subprocess.run([shutil.which("systemd-analyze") or "systemd-analyze",
                          "syscall-filter"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    sets: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.strip()
            sets[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            sets[current].append(line.strip())
        elif not line.strip():
            current = None
    return sets


def expand(name: str) -> set[str]:
    out: set[str] = set()
    for member in syscall_sets()[name]:
        out |= expand(member) if member.startswith("@") else {member}
    return out


def policy(tmp_path: Path) -> dict[str, Any]:
    """The unit's filter as syscall numbers and address families."""
    s = settings(UNIT)
    allowed: set[str] = set()
    for value in s["SystemCallFilter"]:
        deny = value.startswith("~")
        names = set().union(*(expand(w) if w.startswith("@") else {w}
                              for w in value.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    numbers = {m.group(1): int(m.group(2)) for m in
               re.finditer(r"#define __NR_(\w+) (\d+)", UNISTD.read_text())}
    assert s["MemoryDenyWriteExecute"] == ["yes"]
    return {
        "sandbox": True,
        "allowed": sorted(numbers[n] for n in allowed if n in numbers),
        "families": [FAMILIES[f] for f in s["RestrictAddressFamilies"][0].split()],
        "max_nr": max(numbers.values()),
        "tmp": str(tmp_path),
    }


#: the unit's ProcSubset=pid and ProtectProc=invisible, as a /proc mount
UNIT_PROC = ("mount -t proc -o subset=pid,hidepid=invisible proc /proc"
             ' && exec "$0" "$@"')


def run(pol: dict[str, Any], netns: str) -> dict[str, Any]:
    cmd = ["ip", "netns", "exec", netns]
    if pol["sandbox"]:
        cmd += ["unshare", "--mount", "--propagation", "private", "sh", "-c", UNIT_PROC]
    cmd += [sys.executable, str(CHILD), json.dumps(pol)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert p.returncode == 0, f"child died ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return dict(json.loads(p.stdout.splitlines()[-1]))


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A network namespace with lo up and a veth end at 10.20.0.10 and 2001:db8::10."""
    name = f"sentinel-sbx-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        for args in (["link", "set", "lo", "up"],
                     ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                     ["addr", "add", "10.20.0.10/24", "dev", "d0"],
                     ["-6", "addr", "add", "2001:db8::10/64", "dev", "d0", "nodad"],
                     ["link", "set", "d1", "up"],
                     ["link", "set", "d0", "up"]):
            subprocess.run(["ip", "-n", name, *args], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


@pytest.mark.slow
def test_daemon_work_runs_under_the_units_seccomp_policy(tmp_path: Path) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the filter is written for x86_64")
    if os.geteuid() != 0:
        pytest.skip("needs root (AF_PACKET capture)")
    if shutil.which("systemd-analyze") is None or not UNISTD.exists():
        pytest.skip("needs systemd-analyze and linux-libc-dev's unistd_64.h")
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (iproute2, util-linux)")
    pol = policy(tmp_path)
    with netns() as ns:
        control = run({**pol, "sandbox": False}, ns)
        boxed = run(pol, ns)

    # the filter is on: what the unit forbids is refused
    assert boxed["must_fail"] == {"wx_mmap": "EPERM", "af_vsock": "EAFNOSUPPORT",
                                  "chroot": "EPERM"}
    assert control["must_fail"] == {"wx_mmap": "allowed", "af_vsock": "allowed",
                                    "chroot": "allowed"}

    # the host's own addresses are read the same way inside the unit's /proc view
    assert control["host_addresses"].startswith("ok: 10.20.0.10,2001:db8::10"), control
    assert boxed["host_addresses"] == control["host_addresses"]

    for step in ("crypto", "bcrypt", "sqlite", "inotify", "packet_capture", "ring_capture_lo",
                 "ring_capture_any", "tls_and_metrics", "interfaces", "connection_owner",
                 "audit_netlink"):
        assert control[step].startswith("ok"), f"{step} fails even unsandboxed: {control[step]}"
        assert boxed[step].startswith("ok"), f"{step} under the unit's policy: {boxed[step]}"

    # a module importable without the sandbox imports inside it too
    broken = {name: boxed["imports"][name] for name, ok in control["imports"].items()
              if ok == "ok" and boxed["imports"][name] != "ok"}
    assert not broken, broken
    for lib in ("scapy.all", "cryptography.hazmat.bindings._rust", "bcrypt", "sqlite3", "ssl"):
        assert boxed["imports"][lib] == "ok", lib
