"""An ASGI middleware in front of every request body: the caller's key checked from the headers,
the route's body limit and media type, the body's SHA-256 for request signatures, and the
rate-limit headers on every answer.

This is the one place that limits request bodies. A request to a `/v1` route that needs a key
and names none, or an unknown one, is answered 401 before a byte of its body is read, so
anonymous bodies cost neither memory nor parsing. The upload route (`POST /v1/speakers`) alone
takes multipart bodies up to the upload limit; every other route takes at most the JSON limit,
and multipart elsewhere is answered 415. The limit is checked on the declared Content-Length and
again on the bytes as they arrive, so a client that sends no Content-Length (or a false one) is
answered 413 as soon as it passes the limit, before the rest is read; Starlette then closes the
upload's spooled temporary file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicereel import errors
from voicereel.api import problems
from voicereel.auth.signing import SIGNATURE_HEADER
from voicereel.auth.urls import FILES_PATH
from voicereel.db.tables import ApiKey, Tenant

BODY_SHA256 = "voicereel.body_sha256"
RESPONSE_HEADERS = "voicereel.response_headers"
IDENTIFIED = "voicereel.identified"  # (ApiKey, Tenant) of the caller, once the guard checked it
_SIGNATURE_HEADER = SIGNATURE_HEADER.lower().encode()

UPLOAD_ROUTE = ("POST", "/v1/speakers")
# Multipart framing and form fields around the audio file.
UPLOAD_OVERHEAD_BYTES = 1024 * 1024

Identify = Callable[[str], Awaitable[tuple[ApiKey, Tenant]]]


def needs_key(path: str) -> bool:
    """Whether a request to `path` must name a valid API key (probes, docs and files do not)."""
    # signed download URLs carry their own proof
    return path.startswith("/v1/") and not path.startswith(FILES_PATH)


class BodyGuard:
    def __init__(self, app: ASGIApp, identify: Identify, max_upload_bytes: int,
                 max_json_body_bytes: int) -> None:
        self.app = app
        self.identify = identify
        self.upload_limit = max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        self.json_limit = max_json_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

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

        upload = (scope["method"], scope["path"]) == UPLOAD_ROUTE
        limit = self.upload_limit if upload else self.json_limit
        try:
            await self._check_head(scope, upload, limit)
        except errors.VoiceReelError as exc:
            await problems.problem_response(exc, scope["path"])(scope, receive, send_with_headers)
            return

        signed = any(name == _SIGNATURE_HEADER for name, _ in scope["headers"])
        digest = hashlib.sha256() if signed else None
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    # FastAPI passes HTTPException through body parsing; problems.py renders it
                    raise HTTPException(413, _too_large(limit))
                if digest is not None:
                    digest.update(chunk)
                    if not message.get("more_body", False):
                        scope[BODY_SHA256] = digest.hexdigest()
            return message

        await self.app(scope, guarded_receive, send_with_headers)

    async def _check_head(self, scope: Scope, upload: bool, limit: int) -> None:
        """Everything judged from the request line and headers, before the body."""
        headers = Headers(scope=scope)
        if needs_key(scope["path"]):
            # (`deps.KeyCheck`: a key seen lately from memory, else read in the thread pool)
            scope[IDENTIFIED] = await self.identify(headers.get("authorization", ""))
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type.startswith("multipart/") and not upload:
            raise errors.UnsupportedMediaType(
                f"multipart bodies are accepted only by {' '.join(UPLOAD_ROUTE)}; send JSON")
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise errors.PayloadTooLarge(_too_large(limit))


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"
