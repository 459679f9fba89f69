"""`Strict-Transport-Security` on every answer sent over TLS, so browsers keep to https."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StrictTransport:
    def __init__(self, app: ASGIApp, max_age_seconds: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age_seconds}".encode())
        self.enabled = max_age_seconds > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Over plain http the header means nothing (RFC 6797 8.1): only https answers get it.
        if scope["type"] != "http" or scope.get("scheme") != "https" or not self.enabled:
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = [h for h in message.get("headers", [])
                                      if h[0].lower() != self.header[0]]
                message = {**message, "headers": [*headers, self.header]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)
