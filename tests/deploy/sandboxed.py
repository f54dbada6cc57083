"""Run sentinel's native work under the unit's seccomp policy; print a JSON report.

Started by test_sandbox.py as ``python sandboxed.py POLICY_JSON``. Installs a
seccomp filter equivalent to the unit's ``SystemCallFilter=``,
``RestrictAddressFamilies=`` and ``MemoryDenyWriteExecute=yes`` (systemd 252
implements all three with seccomp, the last by refusing mmap with
PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect adding PROT_EXEC and shmat with
SHM_EXEC), then does what the daemon does natively: imports, Ed25519, bcrypt,
sqlite, TLS, inotify, an AF_PACKET capture on lo, netlink interface listing, the
audit netlink calls of file attribution, the host's own addresses, the metrics
endpoint. The parent runs it in a network namespace of its own, with /proc
mounted as the unit's ``ProcSubset=pid`` and ``ProtectProc=invisible`` mount it.
Each step's outcome goes into the report; the parent asserts on it. x86_64 only
(the parent skips elsewhere).
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import json
import os
import pkgutil
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

AUDIT_ARCH_X86_64 = 0xC000003E
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
X32_BIT = 0x40000000
NR_MMAP, NR_MPROTECT, NR_SHMAT, NR_SOCKET, NR_PKEY_MPROTECT = 9, 10, 30, 41, 329
PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
AF_VSOCK = 40

LD_ABS, JEQ, JGT, JSET, AND, RET = 0x20, 0x15, 0x25, 0x45, 0x54, 0x06
OFF_NR, OFF_ARCH = 0, 4


def _arg(i: int) -> int:
    return 16 + 8 * i  # low 32 bits of args[i] (little endian)


def _errno(e: int) -> int:
    return 0x00050000 | e


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def build(allowed: list[int], families: list[int], max_nr: int) -> list[tuple[int, ...]]:
    """The BPF program. Every jump is short: each test is followed by its own RET."""
    p: list[tuple[int, ...]] = [
        (LD_ABS, 0, 0, OFF_ARCH), (JEQ, 1, 0, AUDIT_ARCH_X86_64), (RET, 0, 0, RET_KILL_PROCESS),
        (LD_ABS, 0, 0, OFF_NR), (JSET, 0, 1, X32_BIT), (RET, 0, 0, _errno(errno.EPERM)),
        # MemoryDenyWriteExecute=yes
        (JEQ, 0, 5, NR_MMAP), (LD_ABS, 0, 0, _arg(2)), (AND, 0, 0, PROT_WRITE | PROT_EXEC),
        (JEQ, 0, 1, PROT_WRITE | PROT_EXEC), (RET, 0, 0, _errno(errno.EPERM)),
        (RET, 0, 0, RET_ALLOW),
    ]
    for nr, bit in ((NR_MPROTECT, PROT_EXEC), (NR_PKEY_MPROTECT, PROT_EXEC), (NR_SHMAT, SHM_EXEC)):
        p += [(JEQ, 0, 4, nr), (LD_ABS, 0, 0, _arg(2)), (JSET, 0, 1, bit),
              (RET, 0, 0, _errno(errno.EPERM)), (RET, 0, 0, RET_ALLOW)]
    # RestrictAddressFamilies=
    p += [(JEQ, 0, 2 + 2 * len(families), NR_SOCKET), (LD_ABS, 0, 0, _arg(0))]
    for fam in families:
        p += [(JEQ, 0, 1, fam), (RET, 0, 0, RET_ALLOW)]
    p += [(RET, 0, 0, _errno(errno.EAFNOSUPPORT))]
    # SystemCallFilter= (an allow list; SystemCallErrorNumber=EPERM)
    for nr in allowed:
        p += [(JEQ, 0, 1, nr), (RET, 0, 0, RET_ALLOW)]
    p += [(JGT, 0, 1, max_nr), (RET, 0, 0, _errno(errno.ENOSYS)),
          (RET, 0, 0, _errno(errno.EPERM))]
    return p


def install(program: list[tuple[int, ...]]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    insns = (_Insn * len(program))(*[_Insn(*i) for i in program])
    prog = _Prog(len(program), insns)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


# --- the work ---------------------------------------------------------------------------


def crypto() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    k.public_key().verify(k.sign(b"x"), b"x")
    return "ed25519 ok"


def bcrypt_() -> str:
    import bcrypt

    assert bcrypt.checkpw(b"pw", bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)))
    return "bcrypt ok"


def sqlite(tmp: Path) -> str:
    import sqlite3

    db = sqlite3.connect(tmp / "t.db")
    db.execute("pragma journal_mode=wal")
    db.execute("create table t (k text primary key, v blob)")
    db.execute("insert into t values ('a', x'00')")
    db.commit()
    return str(db.execute("select count(*) from t").fetchone()[0])


def inotify(tmp: Path) -> str:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    seen: list[str] = []

    class H(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            seen.append(str(event.src_path))

    obs = InotifyObserver()
    obs.schedule(H(), str(tmp), recursive=True)
    obs.start()
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            (tmp / "touched").write_text(str(time.monotonic()))
            time.sleep(0.05)
    finally:
        obs.stop()
        obs.join(5)
    assert seen, "no inotify event"
    return "inotify ok"


def packet_capture() -> str:
    payload = os.urandom(16)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as cap:
        cap.bind(("lo", 0))
        cap.settimeout(0.2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                tx.sendto(payload, ("127.0.0.1", 9))
                try:
                    while True:
                        if payload in cap.recv(65535):
                            return "captured on lo"
                except TimeoutError:
                    continue
    msg = "our packet never showed on lo"
    raise AssertionError(msg)


def ring_capture(iface: str) -> str:
    """sentinel's own TPACKET_V3 capture (BPF filter, mmap ring, promisc / bind-any)."""
    import threading

    from sentinel.sources.net.capture import RingCapture

    payload = os.urandom(16)
    seen = threading.Event()
    stop = threading.Event()

    def handle(etype: int, buf: bytes, off: int, end: int, length: int, t: float,
               mac: int) -> None:
        if payload in bytes(buf[off:end]):
            seen.set()
            stop.set()

    cap = RingCapture(iface, 256, 1 << 20)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            cap.run(handle, stop, lambda n: None, lambda: None,
                    (lambda name: None) if iface == "any" else None)
        except BaseException as e:
            errors.append(e)
            stop.set()

    reader = threading.Thread(target=loop, name="sandbox-capture", daemon=True)
    reader.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(100):
                tx.sendto(payload, ("127.0.0.1", 9))
                if seen.wait(0.1) or errors:
                    break
    finally:
        stop.set()
        reader.join(5)
        cap.close()
    if errors:
        raise errors[0]
    assert seen.is_set(), f"our packet never showed on {iface}"
    return f"ring capture on {iface}"


def tls_and_metrics() -> str:
    import http.client
    import ssl

    from prometheus_client import CollectorRegistry

    from sentinel.config import MetricsConfig
    from sentinel.metrics import Metrics
    from sentinel.sinks.metrics_http import MetricsServer

    ssl.create_default_context()
    s = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), Metrics(CollectorRegistry()),
                      lambda: {"x": True})
    s.start()
    try:
        c = http.client.HTTPConnection(*s.address, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200 and b"sentinel_build_info" in r.read()
    finally:
        s.stop()
    return "served /metrics"


def interfaces() -> str:
    names = [n for _, n in socket.if_nameindex()]  # glibc asks netlink
    assert "lo" in names
    import scapy.all  # noqa: F401 - routes and interfaces come from rtnetlink

    return ",".join(names)


def connection_owner() -> str:
    """The owner of a connection (attribution.connections): sock_diag netlink, then /proc."""
    from prometheus_client import CollectorRegistry

    from sentinel.events import Event
    from sentinel.metrics import Metrics
    from sentinel.sources.net.owner import ConnectionOwners

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()) as c:
            ev = Event("net.connection", 0, "h", "network", {
                "proto": "tcp", "src_ip": "127.0.0.1", "src_port": c.getsockname()[1],
                "dst_ip": "127.0.0.1", "dst_port": srv.getsockname()[1],
                "direction": "outbound"})
            got = ConnectionOwners(Metrics(CollectorRegistry())).resolve([ev])
    assert got[0]["process_pid"] == os.getpid(), got
    return str(got[0]["process_exe"])


def audit_netlink() -> str:
    """File attribution's kernel calls, read-only: the audit status, the rule list, and
    joining the records' multicast group (no record arrives in this namespace)."""
    from sentinel.sources.audit.netlink import AUDIT_NLGRP_READLOG, AuditControl, open_socket

    with AuditControl() as ctl:
        enabled = ctl.status().enabled
        rules = len(ctl.rules())
    open_socket(1 << (AUDIT_NLGRP_READLOG - 1)).close()
    return f"enabled={enabled} rules={rules}"


def host_addresses() -> str:
    from sentinel.hostinfo import local_addresses

    return ",".join(sorted(str(a) for a in local_addresses()))


def imports() -> dict[str, str]:
    """Every sentinel module, and the libraries it uses; name -> 'ok' or the error."""
    out = {}
    names = ["scapy.all", "cryptography.hazmat.bindings._rust", "bcrypt", "yaml", "requests",
             "structlog", "prometheus_client", "watchdog.observers.inotify", "ssl", "sqlite3",
             "ctypes", "hashlib", "zlib"]
    import sentinel

    names += sorted(m.name for m in pkgutil.walk_packages(sentinel.__path__, "sentinel.")
                    if m.name != "sentinel.__main__")  # that one runs the CLI
    for name in names:
        try:
            importlib.import_module(name)
            out[name] = "ok"
        except BaseException as e:
            out[name] = f"{type(e).__name__}: {e}"
    return out


def must_fail() -> dict[str, str]:
    """Things the policy forbids: proof the filter is really on."""
    import mmap

    out = {}
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        out["wx_mmap"] = "allowed"
    except OSError as e:
        out["wx_mmap"] = errno.errorcode.get(e.errno or 0, str(e.errno))
    try:
        # AF_VSOCK: this kernel has it, the unit does not allow it
        socket.socket(AF_VSOCK, socket.SOCK_STREAM, 0).close()
        out["af_vsock"] = "allowed"
    except OSError as e:
        out["af_vsock"] = errno.errorcode.get(e.errno or 0, str(e.errno))
    try:
        os.chroot("/")  # @privileged, refused even to root
        out["chroot"] = "allowed"
    except OSError as e:
        out["chroot"] = errno.errorcode.get(e.errno or 0, str(e.errno))
    return out


def main() -> None:
    policy = json.loads(sys.argv[1])
    if policy["sandbox"]:
        install(build(policy["allowed"], policy["families"], policy["max_nr"]))
    report: dict[str, Any] = {"imports": imports()}
    with tempfile.TemporaryDirectory(dir=policy["tmp"]) as d:
        tmp = Path(d)
        steps: dict[str, Callable[[], str]] = {
            "crypto": crypto, "bcrypt": bcrypt_, "sqlite": lambda: sqlite(tmp),
            "inotify": lambda: inotify(tmp), "packet_capture": packet_capture,
            "ring_capture_lo": lambda: ring_capture("lo"),
            "ring_capture_any": lambda: ring_capture("any"),
            "tls_and_metrics": tls_and_metrics, "interfaces": interfaces,
            "host_addresses": host_addresses, "connection_owner": connection_owner,
            "audit_netlink": audit_netlink,
        }
        for name, step in steps.items():
            try:
                report[name] = "ok: " + step()
            except BaseException:
                report[name] = "failed: " + traceback.format_exc()
    report["must_fail"] = must_fail()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
