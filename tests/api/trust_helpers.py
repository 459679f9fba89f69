"""Helpers of the trust tests (signing, idempotency, limits, webhooks, uploads, usage)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from voicereel.db import repo
from voicereel.db.tables import ApiKey, Job, Speaker, Tenant
from voicereel.services import Services

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and "detail" in body
    if slug:
        assert body["type"].endswith("/" + slug), body
    return body


def caller(services: Services, plaintext: str) -> tuple[ApiKey, Tenant]:
    with services.db.session() as session:
        found = repo.key_and_tenant(session, plaintext)
    assert found is not None
    return found


def add_speaker_row(services: Services, tenant_id: str) -> str:
    """A speaker row without a real reference: enough for requests that only name it."""
    speaker_id = repo.new_id("spk")
    with services.db.session() as session:
        repo.add_speaker(session, Speaker(
            id=speaker_id, tenant_id=tenant_id, name="Row", lang="en", transcript="",
            reference_key=f"tenants/{tenant_id}/speakers/{speaker_id}/reference.wav",
            reference_format="wav", reference_seconds=35.0, speech_seconds=33.0,
            engine="piper", profile={}))
    return speaker_id


def add_job_row(services: Services, tenant_id: str, *, status: str = "failed",
                request: dict[str, Any] | None = None, api_key_id: str | None = None,
                finished_at: datetime | None = None, characters: int = 0,
                audio_seconds: float | None = None, engine: str = "") -> str:
    """A job row in a state the runner leaves alone (finished, or running on a live lease)."""
    job_id = repo.new_id("job")
    with services.db.session() as session:
        repo.add_job(session, Job(
            id=job_id, tenant_id=tenant_id, status=status,
            request=request or {"script": [{"speaker_id": "spk_x", "text": "Hi."}]},
            api_key_id=api_key_id, finished_at=finished_at, characters=characters,
            audio_seconds=audio_seconds, engine=engine, error="test" if status == "failed"
            else None, lease_owner="elsewhere" if status == "running" else None,
            lease_expires_at=datetime(2999, 1, 1).astimezone() if status == "running" else None))
    return job_id
