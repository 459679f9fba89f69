"""Storage seam: `make_storage(settings, secret)` picks the one VOICEREEL_STORAGE names."""

from __future__ import annotations

from pathlib import Path

from voicereel.errors import ValidationFailed
from voicereel.settings import Settings
from voicereel.storage.base import Storage


def make_storage(settings: Settings, signing_secret: bytes) -> Storage:
    if settings.storage == "s3":
        from voicereel.storage.s3 import S3Storage

        return S3Storage(settings)
    from voicereel.storage.local import LocalStorage

    return LocalStorage(settings.data_dir / "files", signing_secret)


def storage_at(settings: Settings, signing_secret: bytes, location: str) -> Storage:
    """A store at another place than the service's own: a folder, or `s3://bucket/prefix`
    (with the service's S3 endpoint and credentials); backups are written there."""
    if location.startswith("s3://"):
        from voicereel.storage.s3 import S3Storage

        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValidationFailed("an S3 location looks like s3://bucket/prefix")
        return S3Storage(settings.model_copy(update={"s3_bucket": bucket, "s3_prefix": prefix}))
    from voicereel.storage.local import LocalStorage

    return LocalStorage(Path(location), signing_secret)


def job_prefix(tenant_id: str, job_id: str) -> str:
    return f"{tenant_id}/jobs/{job_id}"


def revision_prefix(tenant_id: str, job_id: str, revision: int) -> str:
    """The folder of a revision's files: the job's own for the first (as before revisions)."""
    prefix = job_prefix(tenant_id, job_id)
    return prefix if revision == 1 else f"{prefix}/revisions/{revision}"


def speaker_prefix(tenant_id: str, speaker_id: str) -> str:
    return f"{tenant_id}/speakers/{speaker_id}"
