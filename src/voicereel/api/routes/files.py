"""/v1/files: downloads of locally stored files, only through signed, expiring URLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from voicereel.api.deps import ServicesDep
from voicereel.auth.urls import verify_url
from voicereel.errors import NotFound
from voicereel.storage.local import LocalStorage

router = APIRouter(tags=["files"])


@router.get("/v1/files/{key:path}", response_class=FileResponse)
def download(key: str, services: ServicesDep,
             expires: Annotated[str, Query(max_length=20)] = "",
             name: Annotated[str, Query(max_length=200)] = "",
             sig: Annotated[str, Query(max_length=128)] = "") -> FileResponse:
    storage = services.storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("files are served by the object store")
    verify_url(services.settings.resolved_signing_secret(), key, expires, name, sig)
    path = storage.path(key)  # the key was signed by us; path() checks it once more
    if not path.is_file():
        raise NotFound("the file has been deleted")
    media_type = _media_type(path.suffix)
    return FileResponse(path, media_type=media_type, filename=name or path.name)


def _media_type(suffix: str) -> str:
    from voicereel.audio.encode import CONTENT_TYPES as AUDIO
    from voicereel.domain.captions import CONTENT_TYPES as CAPTIONS

    return {**AUDIO, **CAPTIONS}.get(suffix.lstrip("."), "application/octet-stream")
