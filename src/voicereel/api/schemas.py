"""Response models of API v1 (request models live in `domain/script.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from voicereel.db.tables import Speaker


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
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]


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


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
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


class WebhookAttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None


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
