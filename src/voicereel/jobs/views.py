"""A job as the API (and its callbacks) show it: the `JobOut` schema, built in one place."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from voicereel.db import repo
from voicereel.db.tables import utcnow
from voicereel.domain.jobs import JobStatus
from voicereel.services import Services


class FileLink(BaseModel):
    url: str
    content_type: str
    size_bytes: int


class JobResult(BaseModel):
    duration: float | None
    expires_at: datetime
    audio: FileLink
    captions: dict[str, FileLink]
    stems: dict[str, FileLink]


class WebhookAttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None


class JobOut(BaseModel):
    id: str
    status: JobStatus
    progress: float
    units_done: int
    units_total: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: str | None
    result: JobResult | None
    callback_url: str | None = None
    webhook_attempts: list[WebhookAttemptOut] = []


def job_view(services: Services, tenant_id: str, job_id: str, base_url: str) -> JobOut:
    """The tenant's job, with download URLs valid for the configured TTL (NotFound if not
    the tenant's)."""
    settings = services.settings
    with services.db.session() as session:
        job = repo.get_job(session, tenant_id, job_id)
        files = repo.job_files(session, job.id) if job.status == "succeeded" else []
        attempts = repo.webhook_attempts(session, job.id)
    result = None
    if job.status == "succeeded":
        ttl = settings.url_ttl_seconds
        links: dict[str, FileLink] = {}
        for f in files:
            name = f"{job.id}-{f.key.rsplit('/', 1)[-1]}"
            links[f.kind] = FileLink(url=absolute(services.storage.url(f.key, ttl, name),
                                                  base_url, settings.public_url),
                                     content_type=f.content_type, size_bytes=f.size_bytes)
        result = JobResult(
            duration=job.audio_seconds, expires_at=utcnow() + timedelta(seconds=ttl),
            audio=links["audio"],
            captions={k.split(".", 1)[1]: v for k, v in links.items()
                      if k.startswith("captions.")},
            stems={k.split(":", 1)[1]: v for k, v in links.items() if k.startswith("stem:")})
    return JobOut(
        id=job.id, status=job.status,
        progress=round(job.progress, 4), units_done=job.units_done, units_total=job.units_total,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        attempts=job.attempts, error=job.error, result=result,
        callback_url=(job.request or {}).get("callback_url"),
        webhook_attempts=[WebhookAttemptOut(attempt=a.attempt, at=a.at,
                                            status_code=a.status_code, error=a.error)
                          for a in attempts])


def absolute(url: str, base_url: str, public_url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return (public_url or base_url).rstrip("/") + url
