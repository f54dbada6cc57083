"""A real HTTP(S) server on loopback that receives webhooks for the delivery tests.

Every request is recorded; with a secret, its signature is checked with the
``standardwebhooks`` package (an implementation independent of ours) and the
result recorded beside it. ``respond`` decides each answer, so a test can play
an endpoint that is down, slow, throttling or refusing.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.support import free_port, wait_for

__all__ = ["Answer", "Receiver", "Request", "free_port", "server_tls", "wait_for"]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic arrival time
    signature_ok: bool | None  # None: no secret to check with
    status: int = 0  # what the receiver answered
    wall: float = 0.0  # time.time() at arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


Respond = Callable[[int, Request], Answer]






class Receiver:
    """``with Receiver(secret=...) as r:`` — ``r.url``, ``r.requests``, ``r.ids()``."""

    def __init__(self, secret: str | None = None, respond: Respond | None = None,
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.respond: Respond = respond or (lambda n, req: Answer())
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._verifier = Webhook(secret) if secret else None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.path, headers, body, time.monotonic(),
                              outer._check(body, headers), wall=time.time())
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append(req)
                ans = outer.respond(n, req)
                req.status = ans.status
                if ans.delay:
                    time.sleep(ans.delay)
                try:
                    self.send_response(ans.status)
                    for k, v in ans.headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, name="test-receiver",
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def _check(self, body: bytes, headers: dict[str, str]) -> bool | None:
        if self._verifier is None:
            return None
        try:
            self._verifier.verify(body, headers)
        except Exception:
            return False
        return True

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[Request]:
        """Requests answered 2xx: what the sender may count as delivered."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def delivered_ids(self) -> set[str]:
        return {r.headers.get("webhook-id", "") for r in self.delivered()}

    def ids(self) -> set[str]:
        with self.lock:
            return {r.headers.get("webhook-id", "") for r in self.requests}

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def server_tls(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx
