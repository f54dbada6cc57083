"""The metrics endpoint's front door: accept, TLS handshake and request head, without a
thread per connection.

A thread per connection from accept on let 16 clients trickling header bytes
(slowloris) hold every slot, and no scrape was answered. Here one thread
multiplexes every connection until its request head (up to the blank line)
is complete, and only then hands it to a handler thread. A connection gets
:data:`HEAD_TIMEOUT` seconds in all for its handshake and head, and at most
:data:`MAX_HEAD` bytes; at :data:`MAX_PENDING` unfinished connections the
oldest is dropped to make room, so a scraper that sends its request at once
is served beside any number of slow clients.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel import logs

log = logs.get("metrics")

#: Seconds a connection has for its TLS handshake and its whole request head.
HEAD_TIMEOUT = 10.0
#: Bytes a request head may have (Prometheus sends a few hundred).
MAX_HEAD = 16384
#: Connections still sending their head; past it the oldest is dropped.
MAX_PENDING = 256
#: Requests handled at once (each on its own thread); past it new ones are closed.
MAX_HANDLERS = 32

#: Given a socket whose request head is complete, the head, and the peer: answer it.
Dispatch = Callable[[socket.socket, bytes, Any], None]


@dataclass
class _Conn:
    sock: socket.socket
    peer: Any
    deadline: float
    handshaking: bool
    head: bytearray = field(default_factory=bytearray)


class Front:
    """Runs the accept-and-read loop on a thread named ``metrics-http``."""

    def __init__(self, listener: socket.socket, context: Callable[[], ssl.SSLContext] | None,
                 dispatch: Dispatch) -> None:
        self._listener = listener
        self._context = context
        self._dispatch = dispatch
        self._sel = selectors.DefaultSelector()
        self._pending: dict[int, _Conn] = {}  # by fd, oldest first
        self._stop = threading.Event()
        self._dropping = False  # log a spell of dropped slow clients once
        listener.setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._sel.select(timeout=0.1):
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._read(self._pending[key.fd])
                self._expire(time.monotonic())
        finally:
            for c in list(self._pending.values()):
                self._drop(c)
            self._sel.close()
            self._listener.close()

    def _accept(self) -> None:
        for _ in range(64):  # then look at the other sockets too
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._pending:
                    # out of descriptors: the oldest slow client gives one back
                    self._evict()
                    continue
                log.warning("metrics_accept_failed", error=str(exc))
                return
            if len(self._pending) >= MAX_PENDING:
                self._evict()
            sock.setblocking(False)
            handshaking = False
            if self._context is not None:
                try:
                    sock = self._context().wrap_socket(sock, server_side=True,
                                                       do_handshake_on_connect=False)
                except (ssl.SSLError, OSError) as exc:
                    log.debug("metrics_tls_handshake_failed", peer=peer[0], error=str(exc))
                    sock.close()
                    continue
                handshaking = True
            conn = _Conn(sock, peer, time.monotonic() + HEAD_TIMEOUT, handshaking)
            self._pending[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ)

    def _evict(self) -> None:
        oldest = next(iter(self._pending.values()))
        if not self._dropping:
            self._dropping = True
            log.warning("metrics_slow_clients_dropped", reason="too many unfinished requests",
                        limit=MAX_PENDING, peer=oldest.peer[0])
        self._drop(oldest)

    def _expire(self, now: float) -> None:
        late = [c for c in self._pending.values() if c.deadline <= now]
        for c in late:
            log.debug("metrics_request_head_timeout", peer=c.peer[0])
            self._drop(c)
        if not self._pending:
            self._dropping = False

    def _drop(self, c: _Conn) -> None:
        self._pending.pop(c.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(c.sock)
        c.sock.close()

    def _read(self, c: _Conn) -> None:
        if c.handshaking:
            try:
                c.sock.do_handshake()  # type: ignore[attr-defined]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (ssl.SSLError, OSError) as exc:
                # a scanner or a client without the right certificate: not an
                # error of ours, and frequent enough to keep at debug
                log.debug("metrics_tls_handshake_failed", peer=c.peer[0], error=str(exc))
                self._drop(c)
                return
            c.handshaking = False
        while True:
            try:
                data = c.sock.recv(8192)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                self._drop(c)
                return
            if not data:
                self._drop(c)
                return
            c.head += data
            if b"\r\n\r\n" in c.head or b"\n\n" in c.head:
                self._pending.pop(c.sock.fileno(), None)
                self._sel.unregister(c.sock)
                self._dispatch(c.sock, bytes(c.head), c.peer)
                return
            if len(c.head) > MAX_HEAD:
                log.debug("metrics_request_head_too_long", peer=c.peer[0])
                self._drop(c)
                return
