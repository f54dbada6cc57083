"""The ``json`` webhook format: POST the alert, signed per Standard Webhooks.

Headers on every attempt: ``webhook-id`` (the alert id, the same on every
retry, so receivers can deduplicate), ``webhook-timestamp`` (seconds, fresh per
attempt) and, with a secret, ``webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`` keyed with the base64 part of the ``whsec_`` secret.
The body is the alert's bytes exactly as journaled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

from sentinel.config import Secret
from sentinel.metrics import Metrics
from sentinel.sinks.http import Backoff, Outcome, Transport
from sentinel.sinks.lane import Lane
from sentinel.sinks.spool import Record, Spool


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
