"""The ``json`` webhook format: POST the alert, signed per Standard Webhooks.

Headers on every attempt: ``webhook-id`` (the alert id, the same on every
retry, so receivers can deduplicate), ``webhook-timestamp`` (seconds, fresh per
attempt) and, with a secret, ``webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`` keyed with the base64 part of the ``whsec_`` secret.
The body is the alert as journaled; with a ``timezone`` configured it adds
``time_local`` and ``timezone`` (``time`` stays UTC), and a target with its own
``language`` gets that language's title and description (and ``language``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import tzinfo

from sentinel.alert import Alert
from sentinel.config import Secret
from sentinel.i18n import DEFAULT_TIMEZONE, localize
from sentinel.metrics import Metrics
from sentinel.sinks.http import Backoff, Outcome, Transport
from sentinel.sinks.lane import Lane
from sentinel.sinks.spool import Record, Spool


def json_payload(language: str | None, tz: tzinfo, tz_name: str,
                 ) -> Callable[[Alert, bytes], bytes]:
    """The body of a ``json`` target: the alert in ``language`` (None: the site's), local time."""
    def payload(alert: Alert, body: bytes) -> bytes:
        if language is None and tz_name == DEFAULT_TIMEZONE:
            return body  # nothing to add: the journal's own bytes
        shown = localize(alert.to_dict(), language, tz, tz_name)
        return json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode()
    return payload


def signing_key(secret: Secret) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret."""
    value = secret.reveal()
    return base64.b64decode(value.removeprefix("whsec_"))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class JsonLane(Lane):
    """Delivers each spooled alert as one signed POST."""

    def __init__(
        self,
        name: str,
        spool: Spool,
        transport: Transport,
        backoff: Backoff,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        secret: Secret | None = None,
    ) -> None:
        super().__init__(name, spool, transport, backoff, metrics, clock)
        self._key = signing_key(secret) if secret is not None else None

    def post(self, records: list[Record], now: float) -> Outcome:
        rec = records[0]
        ts = int(self.clock())
        headers = {"webhook-id": rec.id, "webhook-timestamp": str(ts)}
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, rec.id, ts, rec.body)
        return self.transport.post(rec.body, headers)
