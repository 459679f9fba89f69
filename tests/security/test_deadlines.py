"""A render that hangs cannot hold a worker: the inline runner enforces `max_job_seconds` as
the Celery runner does, fails the job and frees its slot for the next one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fakes.fish_speech_server import FakeFishSpeech
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.demo import REFERENCE_TRANSCRIPT
from voicereel.services import build_services
from voicereel.settings import Settings

MAX_JOB_SECONDS = 10  # the smallest the setting allows
HANG_SECONDS = 30.0  # the engine server answers only after this (the read timeout is longer)


@pytest.fixture
def hanging_engine() -> Iterator[FakeFishSpeech]:
    with FakeFishSpeech(mode="sleep", sleep_seconds=HANG_SECONDS) as server:
        yield server


@pytest.fixture
def client(hanging_engine: FakeFishSpeech, database_url: str, tmp_path: Path,
           tenant_name: str) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        engine="fish-speech", fish_speech_urls=hanging_engine.url,
                        fish_speech_read_timeout=HANG_SECONDS + 20, max_job_seconds=MAX_JOB_SECONDS,
                        workers=1, line_threads=1, sweep_interval_seconds=0.5,
                        max_concurrent_jobs=0, rate_limit_per_minute=0)
    services = build_services(settings)
    services.db.migrate()
    key = operations.create_key(services, tenant_name)
    with TestClient(create_app(settings, services)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client
    services.db.dispose()


def _status(client: TestClient, job_id: str) -> dict[str, object]:
    return dict(client.get(f"/v1/jobs/{job_id}").json())


def test_a_hanging_render_fails_its_job_and_frees_the_worker(
        client: TestClient, reference_wavs: dict[str, bytes]) -> None:
    r = client.post("/v1/speakers", data={"name": "Alice", "transcript": REFERENCE_TRANSCRIPT},
                    files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
    assert r.status_code == 201, r.text
    script = {"script": [{"speaker_id": r.json()["id"], "text": "This line never comes back."}]}
    first = client.post("/v1/synthesize", json=script).json()["job_id"]
    second = client.post("/v1/synthesize", json=script).json()["job_id"]

    started = time.monotonic()
    deadline = started + HANG_SECONDS - 5  # well before the engine would answer
    while (job := _status(client, first))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    failed_after = time.monotonic() - started
    print(f"hung job failed after {failed_after:.1f} s (max_job_seconds {MAX_JOB_SECONDS})")
    assert job["status"] == "failed", job
    assert f"longer than the allowed {MAX_JOB_SECONDS} s" in str(job["error"])

    # The one job thread is free again: the second job is taken while the first line still
    # hangs in the engine.
    while _status(client, second)["status"] == "queued":
        assert time.monotonic() < deadline, "the second job was never started"
        time.sleep(0.2)
