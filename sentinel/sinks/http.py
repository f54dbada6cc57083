"""HTTP POST for delivery lanes, and the retry policy beside it.

The transport only classifies a response (:class:`Outcome`); the lane decides
what to do. 2xx is delivered; 408, 429, 5xx and connection errors (refused,
reset, timeout, TLS failure) are worth retrying; any other status is a
permanent failure. Redirects are not followed: a signed alert goes only where
it was configured to go.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import requests

from sentinel import __version__
from sentinel.config import WebhookConfig

_QUERY = re.compile(r"\?[^\s)'\"]*")
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
    """The URL for logs and errors: no query string or fragment (they may carry tokens)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


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
    if 200 <= status < 300:
        return "ok"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "fail"


class Transport:
    """A keep-alive session to one URL with the target's TLS and headers."""

    def __init__(self, hook: WebhookConfig, url: str, clock: Callable[[], float] = time.time
                 ) -> None:
        self.url = url
        self.timeout = hook.timeout
        self._clock = clock
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment sees our alerts
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
        try:
            resp = self._session.post(self.url, data=body, headers=headers,
                                      timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            return Outcome("retry", reason=f"TLS error: {_short(exc)}")
        except requests.exceptions.Timeout:
            return Outcome("retry", reason=f"no response within {self.timeout:g}s")
        except requests.exceptions.RequestException as exc:
            return Outcome("retry", reason=f"connection error: {_short(exc)}")
        status = resp.status_code
        result = classify(status)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._clock())
        reason = f"HTTP {status}"
        if result == "fail" and 300 <= status < 400:
            reason += " (redirects are not followed; configure the final URL)"
        resp.close()
        return Outcome(result, status, retry_after if result == "retry" else None, reason)

    def close(self) -> None:
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
