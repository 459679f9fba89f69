"""/v1/speakers: register, list, show and delete voices."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import Response

from voicereel import idempotency, operations
from voicereel.api.deps import ScopedRoute, ServicesDep, SpeakersRead, SpeakersWrite
from voicereel.api.schemas import ReferenceOut, SpeakerOut, SpeakerPage, speaker_out
from voicereel.db import repo
from voicereel.errors import PayloadTooLarge

router = APIRouter(prefix="/v1/speakers", tags=["speakers"], route_class=ScopedRoute)


@router.post("", status_code=201, response_model=SpeakerOut)
def create_speaker(
    services: ServicesDep, caller: SpeakersWrite,
    name: Annotated[str, Form()],
    audio: Annotated[UploadFile, File(description="WAV, FLAC, OGG or MP3 reference")],
    transcript: Annotated[str, Form()] = "",
    lang: Annotated[str, Form()] = "en",
    idempotency_key: Annotated[str | None, Header(
        alias=idempotency.HEADER, max_length=idempotency.MAX_KEY_CHARS)] = None,
) -> Any:
    tenant = caller.tenant
    limit = services.settings.max_upload_bytes
    data = audio.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the audio file is larger than {limit} bytes")

    def register() -> idempotency.StoredResponse:
        speaker = operations.register_speaker(services, tenant, name, data, transcript, lang)
        body = SpeakerOut.model_validate(speaker_out(speaker)).model_dump(mode="json")
        return idempotency.StoredResponse(201, body, {"Location": f"/v1/speakers/{speaker.id}"})

    # the file's name is not part of the request's meaning, its bytes are
    fingerprint = idempotency.fingerprint("POST", "/v1/speakers", {
        "name": name, "transcript": transcript, "lang": lang,
        "audio_sha256": hashlib.sha256(data).hexdigest()})
    return idempotency.respond(services, tenant.id, idempotency_key, fingerprint, register)


@router.get("", response_model=SpeakerPage)
def list_speakers(
    services: ServicesDep, caller: SpeakersRead,
    limit: Annotated[int | None, Query(ge=1)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    name: Annotated[str | None, Query(max_length=200, description=(
        "only the voices whose name contains this, case-insensitive (a cursor keeps it)"))] = None,
) -> Any:
    """The tenant's voices, newest first, a page at a time."""
    settings = services.settings
    size = min(limit or settings.page_size_default, settings.page_size_max)
    with services.db.session() as session:
        page = repo.list_speakers(session, caller.tenant.id, size, cursor, name)
        return {"items": [speaker_out(s) for s in page.items], "next_cursor": page.next_cursor}


@router.get("/{speaker_id}", response_model=SpeakerOut)
def get_speaker(speaker_id: str, services: ServicesDep, caller: SpeakersRead) -> Any:
    with services.db.session() as session:
        return speaker_out(repo.get_speaker(session, caller.tenant.id, speaker_id))


@router.get("/{speaker_id}/reference", response_model=ReferenceOut)
def get_reference(speaker_id: str, request: Request, services: ServicesDep,
                  caller: SpeakersRead) -> Any:
    """A signed download URL of the speaker's reference recording (to listen to it)."""
    link = operations.reference_link(services, caller.tenant.id, speaker_id,
                                     str(request.base_url))
    return {"url": link.url, "content_type": link.content_type, "expires_at": link.expires_at}


@router.delete("/{speaker_id}", status_code=204)
def delete_speaker(speaker_id: str, services: ServicesDep, caller: SpeakersWrite) -> Response:
    operations.delete_speaker(services, caller.tenant, speaker_id)
    return Response(status_code=204)
