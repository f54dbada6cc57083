#!/usr/bin/env python3
"""A minimal webhook receiver for trying sentinel out: prints each alert and whether
its Standard Webhooks signature verifies. Standard library only.

    SECRET=whsec_... python3 receiver.py 8000

Every path is accepted, so one receiver can play several targets
(http://127.0.0.1:8000/bawaslu, http://127.0.0.1:8000/ministry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRETS = [s for s in os.environ.get("SECRET", "").split(",") if s]


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    return any(hmac.compare_digest(expected, sig.split(",", 1)[1])
               for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        signed = "webhook-signature" in headers
        ok = signed and any(verify(s, headers, body) for s in SECRETS)
        alert = json.loads(body)
        mark = "signature OK" if ok else ("BAD SIGNATURE" if signed else "unsigned")
        print(f"{self.path} [{mark}] {alert.get('severity', '?'):8} {alert.get('rule', '?')}:"
              f" {alert.get('title', '')}", flush=True)
        self.send_response(200 if ok or not SECRETS else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
