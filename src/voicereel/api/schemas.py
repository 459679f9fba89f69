"""Response models of API v1 (request models live in `domain/script.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from voicereel import audit
from voicereel.auth.roles import Role
from voicereel.db.tables import ApiKey, AuditEvent, Lexicon, Speaker
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


class ReferenceOut(BaseModel):
    """Where to download a speaker's reference recording (a signed URL, like a job's files)."""

    url: str
    content_type: str
    expires_at: datetime


class SpeakerPage(BaseModel):
    items: list[SpeakerOut]
    next_cursor: str | None


def speaker_out(speaker: Speaker) -> dict[str, Any]:
    return {"id": speaker.id, "name": speaker.name, "lang": speaker.lang,
            "transcript": speaker.transcript,
            "reference_seconds": round(speaker.reference_seconds, 3),
            "speech_seconds": round(speaker.speech_seconds, 3),
            "created_at": speaker.created_at}


class KeyOut(BaseModel):
    """An API key as listed: never its secret."""

    id: str
    prefix: str  # the first characters of the secret, to tell keys apart
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None  # to the minute
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None  # set by a rotation; the key then expires at expires_at
    require_signature: bool
    rate_limit_per_minute: int | None
    max_concurrent_jobs: int | None


class KeyCreated(KeyOut):
    """A key just made (or rotated): `key`, and `signing_secret` when made with
    `require_signature`, are shown this once."""

    key: str
    signing_secret: str | None = None


class KeyList(BaseModel):
    items: list[KeyOut]


def key_out(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "prefix": key.prefix, "name": key.name, "role": key.role,
            "created_at": key.created_at, "last_used_at": key.last_used_at,
            "expires_at": key.expires_at, "revoked_at": key.revoked_at,
            "replaced_by": key.replaced_by, "require_signature": key.require_signature,
            "rate_limit_per_minute": key.rate_limit_per_minute,
            "max_concurrent_jobs": key.max_concurrent_jobs}


class AuditEventOut(BaseModel):
    """One state-changing request: who, what, on which resource, and how it ended."""

    id: int
    at: datetime
    key_id: str
    key_prefix: str
    role: str
    action: str  # e.g. job.submit, key.revoke
    resource_id: str | None
    request_id: str | None  # the answer's X-Request-ID
    client_ip: str | None
    status: int
    outcome: Literal["succeeded", "refused", "failed"]


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


def audit_out(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.at, "key_id": event.key_id,
            "key_prefix": event.key_prefix, "role": event.role, "action": event.action,
            "resource_id": event.resource_id, "request_id": event.request_id,
            "client_ip": event.client_ip, "status": event.status,
            "outcome": audit.outcome(event.status)}


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


class EngineLanguage(BaseModel):
    tag: str  # primary BCP 47 subtag; any region or script of it is accepted (ko-KR)
    name: str
    quality: Literal["native", "fallback"]
    normalisation: str  # what is done to the text before the engine reads it


class EngineLanguages(BaseModel):
    name: str
    configured: bool  # renders the lines (VOICEREEL_ENGINE)
    fallback: bool  # renders the lines the configured one cannot speak
    languages: list[EngineLanguage]


class LanguagesOut(BaseModel):
    """`GET /v1/languages`."""

    engine: str
    fallback_engine: str | None
    engines: list[EngineLanguages]
    accepted: list[str]  # the languages a line may be in here (configured or fallback engine)


class LexiconRuleOut(BaseModel):
    grapheme: str
    alias: str | None = None
    phoneme: str | None = None
    case_sensitive: bool = False


class LexiconOut(BaseModel):
    id: str
    name: str
    lang: str
    rules: list[LexiconRuleOut]
    created_at: datetime
    updated_at: datetime


class LexiconPage(BaseModel):
    items: list[LexiconOut]
    next_cursor: str | None


def lexicon_out(lexicon: Lexicon) -> dict[str, Any]:
    rules = (lexicon.rules or {}).get("rules", [])
    return {"id": lexicon.id, "name": lexicon.name, "lang": lexicon.lang, "rules": rules,
            "created_at": lexicon.created_at, "updated_at": lexicon.updated_at}
