"""HTTP POST for delivery lanes, and the retry policy beside it.

The transport only classifies a response (:class:`Outcome`); the lane decides
what to do. 2xx is delivered; 408, 429, 5xx and connection errors (refused,
reset, timeout, TLS failure) are worth retrying; any other status is a
permanent failure. Redirects are not followed: a signed alert goes only where
it was configured to go.

The target's ``timeout`` bounds the whole exchange, not each read: a
receiver that drips its answer a byte at a time would otherwise hold the lane
for as long as it likes. A timer shuts the request's socket down when the
deadline passes (the pool is watched to know which connection is in use), and
the attempt counts as a retriable failure.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from sentinel import __version__
from sentinel.config import WebhookConfig

_QUERY = re.compile(r"\?[^\s)'\"]*")
#: Bytes of a receiver's answer body read (the status is what counts).
_ANSWER_MAX = 65536
#: A server asking for more than this is probably wrong; alerts must not park for days.
RETRY_AFTER_CAP = 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one POST went: ``ok``, ``retry`` or ``fail``."""

    result: str
    status: int | None = None
    retry_after: float | None = None
    reason: str = ""


def safe_url(url: str) -> str:
    """The URL for logs, errors and the report: scheme, host and port only.

    Receivers put tokens in the path (``/hooks/T0/B1/SECRET``) as often as in the
    query string, so the path is shown as ``/...`` and the query, fragment and any
    credentials not at all; the target's name says which receiver it is.
    """
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = p.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((p.scheme, netloc, "/..." if p.path not in ("", "/") else p.path,
                       "", ""))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = float(value)
    else:
        try:
            delay = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(delay, 0.0), RETRY_AFTER_CAP)


def classify(status: int) -> str:
    """ok, retry or fail for an answer's status.

    407 comes from a proxy on the way, not from the receiver, which never saw the
    alert: it is retried (and the stalled backlog alerts) until the proxy's
    credentials are fixed, like a connection error.
    """
    if 200 <= status < 300:
        return "ok"
    if status in (407, 408, 429) or status >= 500:
        return "retry"
    return "fail"


class _Watch:
    """The connection a transport's one request is using right now."""

    def __init__(self) -> None:
        self.conn: Any = None


def _watched(base: type[HTTPConnectionPool], watch: _Watch) -> type[HTTPConnectionPool]:
    class Pool(base):  # type: ignore[valid-type,misc]
        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            watch.conn = conn
            return conn
    return Pool


class _Adapter(HTTPAdapter):
    """requests' adapter, with pools that report the connection each request takes."""

    def __init__(self, watch: _Watch) -> None:
        self._watch = watch  # before super().__init__, which builds the pool manager
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools()

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # through a proxy the requests go by the proxy's own pools: watch those too,
        # or the overall deadline would not hold behind a proxy
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pools()
        return manager

    def _pools(self) -> dict[str, Any]:
        return {
            "http": _watched(HTTPConnectionPool, self._watch),
            "https": _watched(HTTPSConnectionPool, self._watch),
        }


def _proxy_url(hook: WebhookConfig) -> str:
    """The proxy URL with its credentials (from the environment), for requests only."""
    assert hook.proxy is not None
    if hook.proxy_auth is None:
        return hook.proxy
    user, _, password = hook.proxy_auth.reveal().partition(":")
    p = urlsplit(hook.proxy)
    return urlunsplit((p.scheme, f"{quote(user, safe='')}:{quote(password, safe='')}@{p.netloc}",
                       "", "", ""))


class _Deadline:
    """Shuts down the watched request's socket when its deadline passes.

    One thread per transport, started at the first request and parked between
    requests: a thread per request would cost more than a fast POST.
    """

    #: How often to look again when the deadline finds the socket still connecting.
    RECHECK = 0.05

    def __init__(self, watch: _Watch) -> None:
        self._watch = watch
        self._cond = threading.Condition()
        self._until: float | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.expired = False

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._watch.conn = None
            self.expired = False
            self._until = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="delivery-deadline",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._until = None
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._until is None:
                    self._cond.wait()
                    continue
                left = self._until - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.expired = True
                sock = getattr(self._watch.conn, "sock", None)
                if sock is None:
                    # still connecting (bounded by the connect timeout): look again shortly
                    self._cond.wait(self.RECHECK)
                    continue
                # OSError: already closed, the request is ending on its own
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                self._until = None


class Transport:
    """A keep-alive session to one URL with the target's TLS and headers; each
    request has ``timeout`` seconds in all."""

    def __init__(self, hook: WebhookConfig, url: str, clock: Callable[[], float] = time.time
                 ) -> None:
        self.url = url
        self.timeout = hook.timeout
        self._clock = clock
        self._watch = _Watch()
        self._deadline = _Deadline(self._watch)
        self._session = requests.Session()
        adapter = _Adapter(self._watch)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.trust_env = False  # no proxy from the environment sees our alerts
        if hook.proxy is not None:
            self._session.proxies = {"http": _proxy_url(hook), "https": _proxy_url(hook)}
        if hook.ca_file is not None:
            self._session.verify = str(hook.ca_file)
        else:
            self._session.verify = hook.verify_tls
        if hook.client_cert is not None and hook.client_key is not None:
            self._session.cert = (str(hook.client_cert), str(hook.client_key))
        self._session.headers.update({
            "User-Agent": f"sentinel/{__version__}",
            "Content-Type": "application/json",
        })
        self._session.headers.update(dict(hook.headers))

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Outcome:
        """One POST, answered or abandoned within ``timeout`` seconds overall."""
        self._deadline.arm(self.timeout)
        try:
            resp = self._session.post(self.url, data=body, headers=headers,
                                      timeout=self.timeout, allow_redirects=False,
                                      stream=True)
            # a little of the answer, inside the deadline; a receiver that
            # answers with gigabytes gets no more of our memory than this
            resp.raw.read(_ANSWER_MAX, decode_content=False)
        except (requests.exceptions.RequestException, HTTPError, OSError) as exc:
            # reading the body raises urllib3's own errors, not requests'
            if self._deadline.expired:
                return Outcome("retry", reason=f"no complete answer within"
                                               f" {self.timeout:g}s (the overall deadline)")
            return self._failed(exc)
        finally:
            self._deadline.disarm()
        status = resp.status_code
        result = classify(status)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._clock())
        reason = f"HTTP {status}"
        if result == "fail" and 300 <= status < 400:
            reason += " (redirects are not followed; configure the final URL)"
        resp.close()
        return Outcome(result, status, retry_after if result == "retry" else None, reason)

    def _failed(self, exc: Exception) -> Outcome:
        if isinstance(exc, requests.exceptions.SSLError):
            return Outcome("retry", reason=f"TLS error: {_short(exc)}")
        if isinstance(exc, requests.exceptions.Timeout):
            return Outcome("retry", reason=f"no response within {self.timeout:g}s")
        return Outcome("retry", reason=f"connection error: {_short(exc)}")

    def close(self) -> None:
        self._deadline.close()
        self._session.close()


def _short(exc: Exception) -> str:
    # requests nests the cause; the innermost message is the useful one, and it
    # never contains the body or headers
    inner: BaseException = exc
    while inner.__context__ is not None and len(str(inner.__context__)) > 0:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    # a URL quoted in the message may carry a token in its query string
    return _QUERY.sub("?...", text)[:200]


class Backoff:
    """Exponential backoff with full jitter, capped; ``Retry-After`` wins when given."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, retry_after: float | None = None) -> float:
        """The wait after one more consecutive failure."""
        cap = min(self.maximum, self.initial * 2 ** min(self.failures, 60))
        self.failures += 1
        if retry_after is not None:
            return retry_after
        return self._rng.uniform(0, cap)

    def reset(self) -> None:
        self.failures = 0
