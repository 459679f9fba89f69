"""OpenAI-compatible routes: POST /v1/audio/speech (audio, streamed or whole) and GET /v1/models."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from voicereel import openai_speech
from voicereel.api.deps import JobsWrite, ModelsRead, ScopedRoute, ServicesDep
from voicereel.openai_speech import SpeechRequest

router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=ScopedRoute)

_AUDIO = {"content": {media: {"schema": {"type": "string", "format": "binary"}}
                      for media in sorted({*openai_speech.MEDIA_TYPES.values(),
                                           openai_speech.SSE_MEDIA_TYPE})},
          "description": "the audio in the requested format (streamed with chunked transfer "
                         "unless whole), or OpenAI's speech events as text/event-stream"}
# Proxies (nginx) would otherwise buffer the stream and undo its point.
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/audio/speech", response_class=Response, responses={200: _AUDIO})
def create_speech(body: SpeechRequest, services: ServicesDep, caller: JobsWrite) -> Response:
    speech = openai_speech.create_speech(services, caller.tenant, caller.key, body)
    if speech.chunks is None:
        return Response(speech.body, media_type=speech.media_type)
    return StreamingResponse(_in_threads(speech.chunks), media_type=speech.media_type,
                             headers=_STREAM_HEADERS)


async def _in_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each chunk rendered in the thread pool; a client that goes away closes the render (and
    frees its slot) instead of leaving it to the garbage collector."""
    done = object()
    try:
        while (chunk := await run_in_threadpool(next, chunks, done)) is not done:
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            # still running in a pool thread after a cancel: it closes when collected
            with contextlib.suppress(ValueError):
                close()


@router.get("/models")
def list_models(services: ServicesDep, caller: ModelsRead) -> dict[str, Any]:
    return openai_speech.list_models(services)


@router.get("/models/{model_id}")
def get_model(model_id: str, services: ServicesDep, caller: ModelsRead) -> dict[str, Any]:
    return openai_speech.get_model(services, model_id)
