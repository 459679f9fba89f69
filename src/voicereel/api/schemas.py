"""Response models of API v1 (request models live in `domain/script.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

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
