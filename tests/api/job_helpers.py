"""Steps the API tests share: register a speaker, wait for a job to finish."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient


def register_speaker(client: TestClient, wav: bytes, name: str, lang: str = "en") -> str:
    """The id of a new speaker registered from `wav`."""
    r = client.post("/v1/speakers", data={"name": name, "lang": lang},
                    files={"audio": ("r.wav", wav, "audio/wav")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def wait_for_job(client: TestClient, job_id: str, timeout: float = 240) -> dict[str, Any]:
    """The job once it has finished; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
