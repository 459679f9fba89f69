"""Local storage: files under the data dir, served by the API through signed URLs.

The download route (`GET /v1/files/{key}?expires=&name=&sig=`) belongs to this store: the API
mounts whatever `download_router()` returns.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from voicereel.auth.urls import FILES_PATH, sign_url, verify_url
from voicereel.errors import NotFound
from voicereel.storage.base import check_key


class LocalStorage:
    name = "local"

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = secret

    def path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise NotFound("no such file")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file and a retry simply replaces it.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound("no such file") from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        folder = self.path(prefix.rstrip("/"))
        if folder.is_dir():
            shutil.rmtree(folder)
        # Drop directories left empty, up to the storage root.
        parent = folder.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def url(self, key: str, ttl_seconds: int, download_name: str) -> str:
        return sign_url(self._secret, check_key(key), ttl_seconds, download_name)

    def ready(self) -> bool:
        return os.access(self.root, os.W_OK)

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def download_router(self, is_live: Callable[[str], bool]) -> APIRouter:
        """Downloads of stored files, only through signed, expiring URLs."""
        router = APIRouter(tags=["files"])

        @router.get(FILES_PATH + "{key:path}", response_class=FileResponse)
        def download(key: str, expires: Annotated[str, Query(max_length=20)] = "",
                     name: Annotated[str, Query(max_length=200)] = "",
                     sig: Annotated[str, Query(max_length=128)] = "") -> FileResponse:
            verify_url(self._secret, key, expires, name, sig)
            path = self.path(key)  # the key was signed by us; path() checks it once more
            if not path.is_file() or not is_live(key):
                raise NotFound("the file has been deleted")
            return FileResponse(path, media_type=_media_type(path.suffix),
                                filename=name or path.name)

        return router


def _media_type(suffix: str) -> str:
    from voicereel.audio.encode import CONTENT_TYPES as AUDIO
    from voicereel.domain.captions import CONTENT_TYPES as CAPTIONS

    return {**AUDIO, **CAPTIONS}.get(suffix.lstrip("."), "application/octet-stream")
