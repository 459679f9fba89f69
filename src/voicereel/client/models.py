"""Typed results of the API, as the client returns them.

Fields the server adds later are kept (not refused), so an older client keeps working.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "canceled")
# The roles a key can have (the service's docs/security.md says what each may do)
KEY_ROLES = ("owner", "editor", "renderer", "viewer", "billing")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Speaker(_Model):
    id: str
    name: str
    lang: str
    transcript: str = ""
    reference_seconds: float
    speech_seconds: float
    created_at: datetime


class SpeakerPage(_Model):
    items: list[Speaker]
    next_cursor: str | None = None


class FileLink(_Model):
    """A download URL (valid until the result's `expires_at`) and what it holds."""

    url: str
    content_type: str
    size_bytes: int


class JobResult(_Model):
    duration: float | None = None
    expires_at: datetime
    audio: FileLink
    captions: dict[str, FileLink] = Field(default_factory=dict)
    stems: dict[str, FileLink] = Field(default_factory=dict)


class Job(_Model):
    id: str
    revision: int = 1  # the latest revision, which this shows
    status: JobStatus
    progress: float = 0.0
    units_done: int = 0
    units_total: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    error: str | None = None
    result: JobResult | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class JobAccepted(_Model):
    job_id: str
    status: JobStatus


class RevisionAccepted(_Model):
    job_id: str
    revision: int
    status: JobStatus
    lines_to_render: list[int] = Field(default_factory=list)


class Take(_Model):
    line: int
    rendered_in: int
    seed: int | None = None


class Revision(_Model):
    """One revision of a job; `request` is its whole script and options."""

    job_id: str
    number: int
    latest: bool
    status: JobStatus
    progress: float = 0.0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    edits: list[dict[str, Any]] | None = None
    request: dict[str, Any]
    characters: int = 0
    files_kept: bool = True
    result: JobResult | None = None
    captions: dict[str, FileLink] = Field(default_factory=dict)
    takes: list[Take] = Field(default_factory=list)


class RevisionList(_Model):
    revisions: list[Revision]


class Downloads(_Model):
    """Where `download` wrote a job's files."""

    audio: Path
    captions: dict[str, Path] = Field(default_factory=dict)
    stems: dict[str, Path] = Field(default_factory=dict)

    def paths(self) -> list[Path]:
        return [self.audio, *self.captions.values(), *self.stems.values()]


class UsageTotals(_Model):
    jobs: int = 0
    characters: int = 0
    audio_seconds: float = 0.0


class UsageDay(UsageTotals):
    date: str
    engine: str


class Usage(_Model):
    """One month of usage (succeeded jobs) as `GET /v1/usage` reports it."""

    month: str
    totals: UsageTotals
    by_engine: dict[str, UsageTotals] = Field(default_factory=dict)
    days: list[UsageDay] = Field(default_factory=list)


class ApiKey(_Model):
    """An API key as `GET /v1/keys` lists it (never its secret)."""

    id: str
    prefix: str
    name: str = ""
    role: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    replaced_by: str | None = None
    require_signature: bool = False
    rate_limit_per_minute: int | None = None
    max_concurrent_jobs: int | None = None


class ApiKeyCreated(ApiKey):
    """A key just created or rotated: `key` (and `signing_secret`) are shown this once."""

    key: str
    signing_secret: str | None = None


class ApiKeyList(_Model):
    items: list[ApiKey]
