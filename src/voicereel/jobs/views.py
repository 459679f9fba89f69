"""A job as the API (and its callbacks) show it: the `JobOut` schema, built in one place."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from voicereel.db import repo
from voicereel.db.tables import JobFile, JobRevision, utcnow
from voicereel.domain.jobs import JobStatus
from voicereel.errors import NotFound
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
    revision: int = 1  # the latest; GET /v1/jobs/{id}/revisions lists them all
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


class TakeOut(BaseModel):
    """The stored rendering a line of a revision sounds like."""

    line: int
    rendered_in: int  # the revision that rendered it (earlier: carried over)
    seed: int | None  # as a line's or an edit's `seed`, renders the same take again


class RevisionOut(BaseModel):
    """One revision of a job: what it asked for and, once it succeeded, its files."""

    job_id: str
    number: int
    latest: bool
    status: JobStatus
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    edits: list[dict[str, Any]] | None  # None for the first revision
    request: dict[str, Any]  # whole, so that the revision can be rendered again
    characters: int  # rendered by this revision (the lines it did not carry over)
    files_kept: bool  # False once retention removed its audio (its captions stay)
    result: JobResult | None  # while its files are kept
    captions: dict[str, FileLink]
    takes: list[TakeOut]  # what each line sounds like (while its files are kept)


class RevisionList(BaseModel):
    revisions: list[RevisionOut]


def job_view(services: Services, tenant_id: str, job_id: str, base_url: str) -> JobOut:
    """The tenant's job, with download URLs valid for the configured TTL (NotFound if not
    the tenant's)."""
    with services.db.reads() as session:
        # Only a job with a callback URL (kept by every revision) has delivery attempts.
        job, files = repo.get_job_with_files(session, tenant_id, job_id)
        callback_url = (job.request or {}).get("callback_url")
        attempts = repo.webhook_attempts(session, job.id) if callback_url else []
    links = file_links(services, job.id, job.revision, files, base_url)
    return JobOut(
        id=job.id, revision=job.revision, status=job.status,
        progress=round(job.progress, 4), units_done=job.units_done, units_total=job.units_total,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        attempts=job.attempts, error=job.error,
        result=result_of(services, links, job.audio_seconds) if links else None,
        callback_url=callback_url,
        webhook_attempts=[WebhookAttemptOut(attempt=a.attempt, at=a.at,
                                            status_code=a.status_code, error=a.error)
                          for a in attempts])


def revision_views(services: Services, tenant_id: str, job_id: str, base_url: str,
                   number: int | None = None) -> list[RevisionOut]:
    """Every revision of the tenant's job, oldest first, or only revision `number`."""
    with services.db.session() as session:
        job = repo.get_job(session, tenant_id, job_id)
        latest = JobRevision(  # the job row is the latest revision; shown as the others
            job_id=job.id, number=job.revision, request=job.request, edits=job.revision_edits,
            status=job.status, error=job.error, units_total=job.units_total,
            characters=job.characters, audio_seconds=job.audio_seconds, engine=job.engine,
            created_at=job.revised_at or job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, files_kept=True)
        wanted = [r for r in [*repo.job_revisions(session, job.id), latest]
                  if number in (None, r.number)]
        if not wanted:
            raise NotFound(f"job {job_id} has no revision {number}")
        files = {r.number: repo.job_files(session, job.id, r.number) if r.status == "succeeded"
                 else [] for r in wanted}
        takes = {r.number: [TakeOut(line=u.index, rendered_in=u.rendered_in, seed=u.seed)
                            for u in repo.revision_units(session, job.id, r.number)]
                 for r in wanted}
        progress = job.progress
    return [revision_out(services, base_url, r, r is latest,
                         progress if r is latest else 1.0, files[r.number], takes[r.number])
            for r in wanted]


def revision_out(services: Services, base_url: str, revision: JobRevision, latest: bool,
                 progress: float, files: list[JobFile], takes: list[TakeOut]) -> RevisionOut:
    links = file_links(services, revision.job_id, revision.number, files, base_url)
    return RevisionOut(
        job_id=revision.job_id, number=revision.number, latest=latest,
        status=revision.status,
        progress=round(progress, 4), created_at=revision.created_at,
        started_at=revision.started_at, finished_at=revision.finished_at, error=revision.error,
        edits=revision.edits, request=revision.request, characters=revision.characters,
        files_kept=revision.files_kept,
        result=result_of(services, links, revision.audio_seconds) if "audio" in links else None,
        captions={k.split(".", 1)[1]: v for k, v in links.items() if k.startswith("captions.")},
        takes=takes)


def file_links(services: Services, job_id: str, revision: int, files: list[JobFile],
               base_url: str) -> dict[str, FileLink]:
    """A download link per file kind, valid for the configured TTL."""
    settings = services.settings
    stem = job_id if revision == 1 else f"{job_id}-r{revision}"
    return {f.kind: FileLink(url=absolute(services.storage.url(
                f.key, settings.url_ttl_seconds, f"{stem}-{f.key.rsplit('/', 1)[-1]}"),
                base_url, settings.public_url),
                content_type=f.content_type, size_bytes=f.size_bytes) for f in files}


def result_of(services: Services, links: dict[str, FileLink],
              audio_seconds: float | None) -> JobResult:
    return JobResult(
        duration=audio_seconds,
        expires_at=utcnow() + timedelta(seconds=services.settings.url_ttl_seconds),
        audio=links["audio"],
        captions={k.split(".", 1)[1]: v for k, v in links.items() if k.startswith("captions.")},
        stems={k.split(":", 1)[1]: v for k, v in links.items() if k.startswith("stem:")})


def absolute(url: str, base_url: str, public_url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return (public_url or base_url).rstrip("/") + url
