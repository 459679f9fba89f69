"""Local storage: files under the data dir, served by the API through signed URLs.

The download route (`GET /v1/files/{key}?expires=&name=&sig=`) belongs to this store: the API
asks it to `mount_downloads`.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse

from voicereel.auth.urls import FILES_PATH, sign_url, verify_url
from voicereel.errors import NotFound
from voicereel.storage.base import check_key, content_type_for
from voicereel.storage.metrics import STORAGE_ERRORS

COPY_CHUNK_BYTES = 1 << 20


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
        self.put_file(key, io.BytesIO(data), content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file and a retry simply replaces it.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                shutil.copyfileobj(source, fh, COPY_CHUNK_BYTES)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):  # a full or read-only disk: what the alert is for
                STORAGE_ERRORS.labels("local", "store").inc()
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound("no such file") from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and not path.name.startswith(".tmp-") and key.startswith(prefix):
                yield key

    def delete_prefix(self, prefix: str) -> None:
        folder = self.path(prefix.rstrip("/"))
        if folder.is_dir():
            shutil.rmtree(folder)
        elif folder.is_file():
            folder.unlink()
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

    def mount_downloads(self, app: FastAPI, is_live: Callable[[str], bool]) -> None:
        """Serve this store's files on `app`, only through signed, expiring URLs."""
        app.state.local_downloads = _Downloads(self, is_live)
        app.include_router(_router)


@dataclass
class _Downloads:
    store: LocalStorage
    is_live: Callable[[str], bool]


# A module-level endpoint that finds its store on the app: FastAPI caches endpoint callables
# for the life of the process, so a closure over one app's store would keep that app alive.
_router = APIRouter(tags=["files"])


@_router.get(FILES_PATH + "{key:path}", response_class=FileResponse)
def download(request: Request, key: str, expires: Annotated[str, Query(max_length=20)] = "",
             name: Annotated[str, Query(max_length=200)] = "",
             sig: Annotated[str, Query(max_length=128)] = "") -> FileResponse:
    downloads: _Downloads = request.app.state.local_downloads
    verify_url(downloads.store._secret, key, expires, name, sig)
    path = downloads.store.path(key)  # the key was signed by us; path() checks it once more
    if not path.is_file() or not downloads.is_live(key):
        raise NotFound("the file has been deleted")
    return FileResponse(path, media_type=content_type_for(key), filename=name or path.name)
