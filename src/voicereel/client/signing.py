"""HMAC request signatures, for API keys created with `--require-signature`.

The scheme (docs/security.md): `VoiceReel-Timestamp: <unix seconds>` and
`VoiceReel-Signature: v1=<hex HMAC-SHA256(secret, canonical)>`, where canonical is the
timestamp, the method, the path with query as sent, and the hex SHA-256 of the body, one per
line. The client keeps its own copy of these few lines so that it needs nothing of the server.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

TIMESTAMP_HEADER = "VoiceReel-Timestamp"
SIGNATURE_HEADER = "VoiceReel-Signature"


class RequestSigner:
    """Adds a timestamp and an HMAC-SHA256 signature of the request to its headers."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def sign(self, request: httpx.Request, now: float | None = None) -> None:
        timestamp = str(int(time.time() if now is None else now))
        target = request.url.raw_path.decode("ascii")
        body_sha256 = hashlib.sha256(request.read()).hexdigest()
        canonical = f"{timestamp}\n{request.method.upper()}\n{target}\n{body_sha256}"
        digest = hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()
        request.headers[TIMESTAMP_HEADER] = timestamp
        request.headers[SIGNATURE_HEADER] = f"v1={digest}"
