"""The Prometheus endpoint: ``/metrics`` and ``/healthz`` over HTTP or HTTPS.

Serves the exposition of the :class:`~sentinel.metrics.Metrics` registry it is
given (never the global one) on ``outputs.metrics.listen``. Optional TLS, with
client certificates required when a client CA is configured (mTLS), and
optional basic auth against bcrypt hashes, in the spirit of the exporter
toolkit's web config. Every path answers 401 without valid credentials, so a
probe learns nothing about the daemon before it authenticates.

bcrypt is slow on purpose (a quarter second at cost 12). A scrape every 15 s
should not pay that each time, so a successful check is remembered for
:data:`AUTH_CACHE_TTL` seconds, keyed by an HMAC of the credentials under a
per-process random key (the cache holds no password, nor a fast hash of one an
attacker could brute-force from a memory dump). Failures are never cached:
every wrong guess costs a full bcrypt round.

Connections are accepted, TLS-handshaken and read up to the end of their
request head by one thread that multiplexes them all, with a deadline for the
whole head (:mod:`sentinel.sinks.http_front`): clients that trickle bytes or
stall a handshake hold up nobody, and a scrape is answered beside hundreds of
them. A complete request is answered on its own named thread. A renewed
certificate (the files change on disk) is used from the next connection on,
without a restart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import hmac
import io
import itertools
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import bcrypt
from prometheus_client.exposition import choose_encoder

from sentinel import logs
from sentinel.config import MetricsConfig, TLSServerConfig
from sentinel.metrics import Metrics
from sentinel.sinks.http_front import MAX_HANDLERS, Front

log = logs.get("metrics")

#: What ``/healthz`` asks: component name -> alive.
Health = Callable[[], dict[str, bool]]

#: Seconds a successful basic-auth check is remembered.
AUTH_CACHE_TTL = 60.0
#: Remembered credentials at most (a handful of scrapers is normal).
AUTH_CACHE_MAX = 64
#: Seconds a client may take to read an answer.
IO_TIMEOUT = 10.0


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against (user, bcrypt hash) pairs."""

    def __init__(
        self,
        users: tuple[tuple[str, str], ...],
        clock: Callable[[], float] = time.monotonic,
        ttl: float = AUTH_CACHE_TTL,
    ) -> None:
        if not users:
            msg = "basic auth needs at least one user"
            raise ValueError(msg)
        self._users = {u: h.encode("ascii") for u, h in users}
        # an unknown user is checked against a real hash, so the answer takes
        # as long as for a known one and does not reveal which users exist
        self._decoy = users[0][1].encode("ascii")
        self._clock = clock
        self._ttl = ttl
        self._key = secrets.token_bytes(32)
        self._ok: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        """True when the header carries a known user and that user's password."""
        if header is None:
            return False
        scheme, _, blob = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            raw = base64.b64decode(blob.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user_b, sep, password = raw.partition(b":")
        if not sep:
            return False
        tag = hmac.new(self._key, user_b + b"\0" + password, hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            until = self._ok.get(tag)
            if until is not None and until > now:
                return True
        try:
            user = user_b.decode("utf-8")
        except UnicodeDecodeError:
            return False
        known = self._users.get(user)
        try:
            matched = bcrypt.checkpw(password, known if known is not None else self._decoy)
        except ValueError:  # e.g. a password over bcrypt's 72-byte limit
            matched = False
        if not (matched and known is not None):
            return False
        with self._lock:
            for k in [k for k, t in self._ok.items() if t <= now]:
                del self._ok[k]
            if len(self._ok) >= AUTH_CACHE_MAX:
                self._ok.clear()
            self._ok[tag] = now + self._ttl
        return True


def tls_context(cfg: TLSServerConfig) -> ssl.SSLContext:
    """A server context from the config: TLS 1.2+, client certs required with a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as e:
        msg = (f"metrics endpoint TLS: cannot load cert_file {cfg.cert_file} with key_file"
               f" {cfg.key_file}: {e}")
        raise OSError(msg) from e
    if cfg.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=cfg.client_ca_file)
        except (OSError, ssl.SSLError) as e:
            msg = f"metrics endpoint TLS: cannot load client_ca_file {cfg.client_ca_file}: {e}"
            raise OSError(msg) from e
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TLSFiles:
    """The server context, rebuilt when the cert, key or CA file changes on disk.

    Renewed certificates take effect on the next connection, without a restart
    (a reload would not notice: the config naming the files is unchanged). A
    renewal that does not load keeps the previous context and is logged once.
    """

    def __init__(self, cfg: TLSServerConfig) -> None:
        self._cfg = cfg
        self._files = [p for p in (cfg.cert_file, cfg.key_file, cfg.client_ca_file)
                       if p is not None]
        self._stamp = self._stat()
        self.context = tls_context(cfg)
        self._lock = threading.Lock()

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for p in self._files:
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((0, 0, 0))
        return tuple(out)

    def current(self) -> ssl.SSLContext:
        """The context to use for a new connection."""
        stamp = self._stat()
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.context = tls_context(self._cfg)
                    log.info("metrics_tls_reloaded", cert_file=str(self._cfg.cert_file))
                except OSError as e:
                    log.error("metrics_tls_reload_failed", error=str(e),
                              detail="the previous certificate stays in use")
            return self.context


class _Handler(BaseHTTPRequestHandler):
    """Answers one request whose head was already read; the answer is built in memory
    and sent with a deadline, so a client that does not read holds a thread at most
    :data:`IO_TIMEOUT` seconds."""

    def __init__(self, sock: socket.socket, head: bytes, peer: Any, app: MetricsServer
                 ) -> None:
        self.app = app
        self._head = head
        super().__init__(sock, peer, None)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BytesIO(self._head)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        out = self.wfile.getvalue()  # type: ignore[attr-defined]
        if out:
            self.connection.setblocking(True)
            self.connection.settimeout(IO_TIMEOUT)
            self.connection.sendall(out)

    def version_string(self) -> str:
        return "sentinel"  # no library or Python versions for a prober to read

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        app = self.app
        if app.auth is not None and not app.auth.check(self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n", head,
                       {"WWW-Authenticate": 'Basic realm="sentinel", charset="UTF-8"'})
            return
        path = urlsplit(self.path).path
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(app.metrics.registry)
            extra = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=5)
                extra["Content-Encoding"] = "gzip"
            self._send(200, content_type, body, head, extra)
        elif path == "/healthz":
            code, report = app.health_report()
            self._send(code, "application/json", json.dumps(report).encode() + b"\n", head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not Found: try /metrics or /healthz\n",
                       head)

    def _send(self, code: int, content_type: str, body: bytes, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics_http", peer=self.client_address[0], line=format % args)


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MetricsServer:
    """Serves one registry's exposition and the daemon's health on one address.

    ``health`` is asked on every ``/healthz`` request; it returns each
    component's name and whether it is alive. ``clock`` (monotonic seconds) is
    only for the basic-auth cache and is a parameter so tests can move it.
    """

    def __init__(
        self,
        config: MetricsConfig,
        metrics: Metrics,
        health: Health,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health
        self.auth = BasicAuth(config.basic_auth, clock) if config.basic_auth else None
        self._front: Front | None = None
        self._address: tuple[str, int] | None = None
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)
        self._numbers = itertools.count(1)
        self._refusing = False  # log a flood once, not once per connection

    def start(self) -> None:
        """Bind and serve on a thread of its own; OSError says what could not be bound."""
        if self._front is not None:
            msg = "the metrics server is already running"
            raise RuntimeError(msg)
        host, port = self.config.listen
        where = _show(host, port)
        tls = TLSFiles(self.config.tls) if self.config.tls is not None else None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(512)
        except OSError as e:
            listener.close()
            msg = (f"metrics endpoint cannot listen on {where} (outputs.metrics.listen):"
                   f" {e.strerror or e}")
            raise OSError(e.errno, msg) from e
        self._address = (str(listener.getsockname()[0]), int(listener.getsockname()[1]))
        self._front = Front(listener, tls.current if tls is not None else None, self._dispatch)
        self._front.start()
        log.info("metrics_listening", address=_show(*self.address), tls=tls is not None,
                 client_certs=tls is not None and self.config.tls is not None
                 and self.config.tls.client_ca_file is not None,
                 basic_auth=self.auth is not None)

    def _dispatch(self, sock: socket.socket, head: bytes, peer: Any) -> None:
        """A complete request head: answer it on a handler thread, if one is free."""
        if not self._slots.acquire(blocking=False):
            if not self._refusing:
                self._refusing = True
                log.warning("metrics_connections_refused", reason="too many at once",
                            limit=MAX_HANDLERS, peer=peer[0])
            sock.close()
            return
        self._refusing = False
        threading.Thread(target=self._serve_one, args=(sock, head, peer),
                         name=f"metrics-http-{next(self._numbers)}", daemon=True).start()

    def _serve_one(self, sock: socket.socket, head: bytes, peer: Any) -> None:
        try:
            _Handler(sock, head, peer, self)
        except OSError as e:
            log.debug("metrics_client_gone", peer=peer[0], error=str(e))
        except Exception:
            log.warning("metrics_request_failed", peer=peer[0], exc_info=True)
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            self._slots.release()

    def stop(self) -> None:
        """Stop accepting and close the socket; requests in flight finish on their own."""
        front, self._front = self._front, None
        if front is not None:
            front.stop()

    def alive(self) -> bool:
        """True while the accept loop runs."""
        return self._front is not None and self._front.thread.is_alive()

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (port 0 in the config becomes the port the kernel chose)."""
        if self._front is None or self._address is None:
            msg = "the metrics server is not running"
            raise RuntimeError(msg)
        return self._address

    def health_report(self) -> tuple[int, dict[str, Any]]:
        """HTTP status and JSON body for ``/healthz``."""
        try:
            components = {str(k): bool(v) for k, v in self.health().items()}
        except Exception:
            log.exception("health_check_failed")
            return 503, {"status": "error", "error": "the health check itself failed"}
        down = sorted(k for k, up in components.items() if not up)
        if down:
            return 503, {"status": "down", "down": down, "components": components}
        return 200, {"status": "ok", "components": components}
