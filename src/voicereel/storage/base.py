"""The Storage seam: where reference audio and job outputs live."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

from fastapi import FastAPI

from voicereel.errors import BadRequest

# Keys are built by the service only (tenant, resource id, fixed file names), never from a
# client's file name; this pattern is checked again wherever a key comes back in.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*(\.[a-z0-9]+)?$")


def content_type_for(key: str) -> str:
    """The content type a stored file of this name is served with."""
    from voicereel.audio.encode import CONTENT_TYPES as AUDIO
    from voicereel.domain.captions import CONTENT_TYPES as CAPTIONS

    suffix = key.rsplit("/", 1)[-1].rsplit(".", 1)[-1] if "." in key else ""
    return {**AUDIO, **CAPTIONS}.get(suffix, "application/octet-stream")


def check_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key) or ".." in key:
        raise BadRequest(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    """Implementations: `local` (files + HMAC-signed URLs served by the API) and `s3`."""

    name: str

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        """Store what `source` holds from its current position, read a piece at a time (an
        hour-long master is never held in memory to be stored)."""
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key that starts with `prefix`, in no particular order."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix/`, and the object `prefix` itself
        (so one file can be removed the same way as a folder)."""
        ...

    def url(self, key: str, ttl_seconds: int, download_name: str) -> str:
        """A URL that serves the object until the TTL passes (relative for `local`)."""
        ...

    def ready(self) -> bool: ...

    def prepare(self) -> None:
        """Make the store usable (run by `voicereel migrate` and `serve`), e.g. its bucket."""
        ...

    def mount_downloads(self, app: FastAPI, is_live: Callable[[str], bool]) -> None:
        """Add to `app` whatever routes serve this store's downloads (none when clients fetch
        from the store itself).

        `is_live(key)` is False once the key's job or speaker is deleted: its files are not
        served even while their removal is still being retried.
        """
        ...
