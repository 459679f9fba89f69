"""Response models of API v1 (request models live in `domain/script.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from voicereel.db.tables import Speaker
from voicereel.domain.jobs import JobStatus
from voicereel.jobs.views import (
    FileLink,
    JobOut,
    JobResult,
    RevisionList,
    RevisionOut,
    WebhookAttemptOut,
)

# the job's shape, re-exported
__all__ = ["FileLink", "JobOut", "JobResult", "RevisionList", "RevisionOut", "WebhookAttemptOut"]


class SpeakerOut(BaseModel):
    id: str
    name: str
    lang: str
    transcript: str
    reference_seconds: float
    speech_seconds: float
    created_at: datetime


class SpeakerPage(BaseModel):
    items: list[SpeakerOut]
    next_cursor: str | None


def speaker_out(speaker: Speaker) -> dict[str, Any]:
    return {"id": speaker.id, "name": speaker.name, "lang": speaker.lang,
            "transcript": speaker.transcript,
            "reference_seconds": round(speaker.reference_seconds, 3),
            "speech_seconds": round(speaker.speech_seconds, 3),
            "created_at": speaker.created_at}


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus


class RevisionAccepted(BaseModel):
    job_id: str
    revision: int
    status: JobStatus
    lines_to_render: list[int]  # the lines of the new revision that render; the rest are reused


class Problem(BaseModel):
    """An RFC 9457 problem: every error answer of the API."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


# Documented on every operation, so clients (and schemathesis) know the error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "description": "A problem (RFC 9457) the client can fix",
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}},
    "5XX": {"model": Problem, "description": "A problem on the server side",
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}},
}


class UsageTotals(BaseModel):
    jobs: int
    characters: int
    audio_seconds: float


class UsageDay(UsageTotals):
    date: str
    engine: str


class UsageReport(BaseModel):
    month: str
    totals: UsageTotals
    by_engine: dict[str, UsageTotals]
    days: list[UsageDay]


class WebhookSecretOut(BaseModel):
    secret: str
    signature_header: str
