"""Storage seam: `make_storage(settings)` picks the implementation named by VOICEREEL_STORAGE."""

from __future__ import annotations

from voicereel.settings import Settings
from voicereel.storage.base import Storage


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        from voicereel.storage.s3 import S3Storage

        return S3Storage(settings)
    from voicereel.storage.local import LocalStorage

    return LocalStorage(settings.data_dir / "files", settings.resolved_signing_secret())


def job_prefix(tenant_id: str, job_id: str) -> str:
    return f"{tenant_id}/jobs/{job_id}"


def speaker_prefix(tenant_id: str, speaker_id: str) -> str:
    return f"{tenant_id}/speakers/{speaker_id}"
