"""Helpers for the connection-owner tests: a known program (a copy of the Python
interpreter under a distinctive, even hostile, name) that opens a socket and says
which port it got, then stays until told to go."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sentinel.events import Event


def program(dirpath: Path, name: bytes) -> bytes:
    """A copy of this interpreter at ``dirpath/name`` (raw bytes), executable."""
    real = os.path.realpath(sys.executable)
    dst = os.fsencode(dirpath) + b"/" + name
    shutil.copyfile(real, dst)
    os.chmod(dst, 0o755)
    return dst


class Actor:
    """A process running ``code`` that prints one line (a port), then waits on stdin."""

    def __init__(self, exe: bytes | str, code: str, *, prefix: Sequence[str] = (),
                 netns: str | None = None, args: Sequence[str | bytes] = ()) -> None:
        cmd: list[str | bytes] = [*prefix, exe, "-c", code, *args]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the actor exited with {self.proc.wait()}"
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def end(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def connect_code(host: str, port: int) -> str:
    """Connects to ``host:port`` and prints its own local port."""
    return ("import socket,sys\n"
            f"s=socket.create_connection(({host!r},{port}))\n"
            "print(s.getsockname()[1],flush=True)\nsys.stdin.read()\n")


def listen_code(host: str, port: int = 0, *, once: bool = False) -> str:
    """Listens on ``host:port`` and prints the port; ``once``: accepts one connection,
    closes the listener (as ``nc -l`` does) and keeps the accepted one."""
    family = "socket.AF_INET6" if ":" in host else "socket.AF_INET"
    body = ("import socket,sys\n"
            f"l=socket.socket({family})\n"
            "l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"l.bind(({host!r},{port}))\nl.listen()\nprint(l.getsockname()[1],flush=True)\n")
    if once:
        body += "c,_=l.accept()\nl.close()\n"
    return body + "sys.stdin.read()\n"


def connection(src: str, sport: int, dst: str, dport: int, proto: str = "tcp",
               **extra: object) -> Event:
    """A net.connection from this host, as the live source makes it."""
    return Event("net.connection", time.time(), "tally-01", "network", {
        "proto": proto, "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
        "direction": "outbound", **extra})


def synack(src: str, sport: int, dst: str, dport: int) -> Event:
    """A net.tcp_synack sent by this host (a local port answering)."""
    return Event("net.tcp_synack", time.time(), "tally-01", "network", {
        "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
        "direction": "outbound", "tcp_flags": "SA"})
