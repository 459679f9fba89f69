"""OpenAI-compatible routes: POST /v1/audio/speech (synchronous audio) and GET /v1/models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from voicereel import openai_speech
from voicereel.api.deps import JobsWrite, ModelsRead, ScopedRoute, ServicesDep
from voicereel.openai_speech import SpeechRequest

router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=ScopedRoute)

_AUDIO = {"content": {media: {"schema": {"type": "string", "format": "binary"}}
                      for media in sorted(set(openai_speech.MEDIA_TYPES.values()))},
          "description": "the audio, in the requested format"}


@router.post("/audio/speech", response_class=Response, responses={200: _AUDIO})
def create_speech(body: SpeechRequest, services: ServicesDep, caller: JobsWrite) -> Response:
    audio, media_type = openai_speech.create_speech(services, caller.tenant, caller.key, body)
    return Response(audio, media_type=media_type)


@router.get("/models")
def list_models(services: ServicesDep, caller: ModelsRead) -> dict[str, Any]:
    return openai_speech.list_models(services)


@router.get("/models/{model_id}")
def get_model(model_id: str, services: ServicesDep, caller: ModelsRead) -> dict[str, Any]:
    return openai_speech.get_model(services, model_id)
