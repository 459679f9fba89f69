"""An ASGI middleware around every request body: a size limit held while reading, the body's
SHA-256 for request signatures, and the rate-limit headers on every answer.

The limit is counted on the bytes as they arrive, so a client that sends no Content-Length (or
a false one) is answered 413 as soon as it passes the limit, before the rest is read; Starlette
then closes the upload's spooled temporary file.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicereel.auth.signing import SIGNATURE_HEADER

BODY_SHA256 = "voicereel.body_sha256"
RESPONSE_HEADERS = "voicereel.response_headers"
_SIGNATURE_HEADER = SIGNATURE_HEADER.lower().encode()


class BodyGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        signed = any(name == _SIGNATURE_HEADER for name, _ in scope["headers"])
        digest = hashlib.sha256() if signed else None
        received = 0
        limit = self.max_body_bytes

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    # FastAPI passes HTTPException through body parsing; problems.py renders it
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
                if digest is not None:
                    digest.update(chunk)
                    if not message.get("more_body", False):
                        scope[BODY_SHA256] = digest.hexdigest()
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra: dict[str, str] = scope.get(RESPONSE_HEADERS) or {}
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    headers: list[Any] = list(message.get("headers", []))
                    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()
                                if k.lower().encode() not in present]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, guarded_receive, send_with_headers)
