"""The Studio: the browser application at `/studio`, static files that drive only `/v1`.

Every answer under `/studio` carries a strict Content-Security-Policy: scripts, styles and
media from this origin only, no inline code, no other host, so the page works on a machine
with no internet and an injected script has nowhere to send what it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from voicereel.domain.caption_layout import StyleName
from voicereel.domain.script import AudioFormat
from voicereel.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
PATH = "/studio"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated, so a new version is picked up at once
    "Cross-Origin-Opener-Policy": "same-origin",
}


class _SecuredFiles(StaticFiles):
    """Static files with the Studio's security headers on every answer (404s included)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in {h.lower() for h in HEADERS}]
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await super().__call__(scope, receive, send_secured)
        except HTTPException as exc:  # raised before any answer started: answer it here
            await PlainTextResponse(str(exc.detail), exc.status_code, headers=HEADERS)(
                scope, receive, send)


def limits(settings: Settings) -> dict[str, int | list[str]]:
    """The script limits the editor counts against (the API enforces them), and the audio
    formats and caption styles the API makes (the export offers each)."""
    return {"audio_formats": list(get_args(AudioFormat)),
            "caption_styles": list(get_args(StyleName)),
            "max_script_lines": settings.max_script_lines,
            "max_line_chars": settings.max_line_chars,
            "max_script_chars": settings.max_script_chars,
            "max_pause_ms": settings.max_pause_ms,
            "min_reference_speech_seconds": int(settings.min_reference_speech_seconds),
            "page_size_max": settings.page_size_max}


def mount(app: FastAPI, settings: Settings) -> None:
    """Serve the Studio at `/studio/`, and its limits at `/studio/config.json`."""
    config = limits(settings)

    @app.get(PATH + "/config.json", include_in_schema=False)
    def _studio_config() -> JSONResponse:
        return JSONResponse(config, headers=HEADERS)

    app.mount(PATH, _SecuredFiles(directory=STATIC_DIR, html=True), name="studio")
