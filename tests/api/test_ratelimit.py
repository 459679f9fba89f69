"""Per-key rate limits: requests per minute (in process and shared through Redis) and
concurrent jobs, answered 429 with Retry-After and RateLimit-* headers."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.api.trust_helpers import add_job_row, add_speaker_row, caller, problem
from voicereel import operations
from voicereel.auth.ratelimit import MemoryCounter, RateLimiter, RedisCounter, make_counter
from voicereel.db.tables import Job
from voicereel.errors import RateLimited
from voicereel.services import Services
from voicereel.settings import Settings

# a database number of our own on the test Redis
REDIS_URL = os.environ.get("VOICEREEL_TEST_RATELIMIT_REDIS_URL", "redis://127.0.0.1:6379/13")


def _keyed_client(client: TestClient, key: str) -> TestClient:
    other = TestClient(client.app)
    other.headers["Authorization"] = f"Bearer {key}"
    return other


def test_requests_per_minute_per_key(client: TestClient, services: Services,
                                     tenant_name: str) -> None:
    key, _ = operations.create_key_with_options(services, tenant_name, rate_limit_per_minute=3)
    limited = _keyed_client(client, key)
    remaining = []
    for _ in range(3):
        response = limited.get("/v1/speakers")
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    # a minute boundary may fall between two requests; then the count starts anew
    if remaining == [2, 1, 0]:
        response = limited.get("/v1/speakers")
        body = problem(response, 429, "rate-limited")
        assert "3 requests per minute" in body["detail"]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["RateLimit-Remaining"] == "0"
        assert response.headers["RateLimit-Limit"] == "3"
    # other keys have their own budget (the service default)
    response = client.get("/v1/speakers")
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == str(services.settings.rate_limit_per_minute)


def test_zero_means_unlimited(client: TestClient, services: Services, tenant_name: str) -> None:
    key, _ = operations.create_key_with_options(services, tenant_name, rate_limit_per_minute=0)
    unlimited = _keyed_client(client, key)
    for _ in range(5):
        response = unlimited.get("/v1/speakers")
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers


def test_limiter_window_arithmetic(services: Services, client: TestClient) -> None:
    key, _ = caller(services, client.headers["Authorization"].split()[1])
    key.rate_limit_per_minute = 2
    limiter = RateLimiter(services.settings, MemoryCounter())
    assert limiter.check(key, now=120.0)["RateLimit-Reset"] == "60"
    assert limiter.check(key, now=150.5)["RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimited) as refused:
        limiter.check(key, now=179.0)
    assert refused.value.headers["Retry-After"] == "1"
    assert limiter.check(key, now=180.0)["RateLimit-Remaining"] == "1"  # a new window


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fails loudly when the test Redis is down
    client.flushdb()
    return REDIS_URL


def test_redis_counters_are_shared_between_processes(services: Services, client: TestClient,
                                                      redis_url: str) -> None:
    settings = Settings(**{**services.settings.model_dump(), "rate_limit_redis_url": redis_url})
    assert isinstance(make_counter(settings), RedisCounter)
    assert isinstance(make_counter(services.settings), MemoryCounter)
    key, _ = caller(services, client.headers["Authorization"].split()[1])
    key.id = f"key_{uuid.uuid4().hex}"
    key.rate_limit_per_minute = 4
    # two limiters stand for two API processes
    first, second = RateLimiter(settings), RateLimiter(settings)
    now = 600.0 * 1000
    assert first.check(key, now=now)["RateLimit-Remaining"] == "3"
    assert second.check(key, now=now + 1)["RateLimit-Remaining"] == "2"
    assert first.check(key, now=now + 2)["RateLimit-Remaining"] == "1"
    assert second.check(key, now=now + 3)["RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimited) as refused:
        first.check(key, now=now + 4)
    assert refused.value.status == 429


def test_redis_backed_api(services: Services, client: TestClient, redis_url: str,
                          tenant_name: str) -> None:
    client.app.state.rate_limiter = RateLimiter(  # type: ignore[attr-defined]
        Settings(**{**services.settings.model_dump(), "rate_limit_redis_url": redis_url}))
    key, _ = operations.create_key_with_options(services, tenant_name, rate_limit_per_minute=1)
    limited = _keyed_client(client, key)
    first = limited.get("/v1/speakers")
    assert first.status_code == 200 and first.headers["RateLimit-Remaining"] == "0"
    second = limited.get("/v1/speakers")
    if second.status_code != 200:  # unless a minute boundary fell in between
        problem(second, 429, "rate-limited")
        assert second.headers["Retry-After"]


def test_concurrent_jobs_per_key(client: TestClient, services: Services,
                                 tenant_name: str) -> None:
    key, _ = operations.create_key_with_options(services, tenant_name, max_concurrent_jobs=1)
    api_key, tenant = caller(services, key)
    limited = _keyed_client(client, key)
    speaker = add_speaker_row(services, tenant.id)
    running = add_job_row(services, tenant.id, status="running", api_key_id=api_key.id)
    body = {"script": [{"speaker_id": speaker, "text": "Hello."}]}
    response = limited.post("/v1/synthesize", json=body)
    detail = problem(response, 429, "rate-limited")["detail"]
    assert "at most 1" in detail and response.headers["Retry-After"].isdigit()
    # once the key's job has finished, its slot is free again
    with services.db.session() as session:
        session.execute(update(Job).where(Job.id == running).values(status="succeeded"))
    accepted = limited.post("/v1/synthesize", json=body)
    assert accepted.status_code == 202, accepted.text
