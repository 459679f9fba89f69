"""Races on the per-key limits (hardening issue, item 6): parallel requests over real HTTP
against `voicereel serve`, on SQLite and PostgreSQL.

- 20 parallel `POST /v1/synthesize` with a key limited to 2 concurrent jobs: exactly 2 accepted.
  The server runs the celery runner with no worker, so accepted jobs stay queued (unfinished)
  for the whole test; its broker is a Redis database of this test's own.
- 10 parallel `POST /v1/audio/speech` with the same limit: at most 2 render at once, the others
  are answered 429, and a finished render frees its slot.
- A keyed request in flight when its server is killed (SIGKILL) leaves a pending idempotency
  record; after the lease, the retry of the same request succeeds on a restarted server.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from tests.api.trust_helpers import add_speaker_row
from tests.conftest import database_backends, postgres_schema
from tests.security.limits_helpers import Server, tenant_of, voicereel_serve
from voicereel import operations
from voicereel.db import repo
from voicereel.db.tables import Job, Speaker, utcnow

BROKER_URL = os.environ.get("VOICEREEL_TEST_LIMITS_BROKER_URL", "redis://127.0.0.1:6379/14")
PARALLEL_SUBMITS = 20
PARALLEL_SPEECH = 10
SLOTS = 2
LEASE_SECONDS = 3
REQUEST_TIMEOUT_SECONDS = 120.0  # liveness bound of one request, never a performance claim
SPEECH_TEXT = ("The keeper climbed the narrow stairs at dusk, wound the clockwork, trimmed the "
               "wick and lit the great lamp once more, as his father had done before him. ") * 4


@pytest.fixture(scope="module", params=database_backends())
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    broker = redis.Redis.from_url(BROKER_URL)
    broker.ping()  # fails loudly when the test Redis is down
    broker.flushdb()
    root = tmp_path_factory.mktemp(f"concurrency-{request.param}")
    try:
        if request.param == "postgres":
            with postgres_schema(str(request.getfixturevalue("postgres_url"))) as url, \
                    voicereel_serve(root, url, runner="celery", broker_url=BROKER_URL) as live:
                yield live
        else:
            with voicereel_serve(root, f"sqlite:///{root / 'voicereel.db'}", runner="celery",
                                 broker_url=BROKER_URL) as live:
                yield live
    finally:
        broker.flushdb()
        broker.close()


def _limited_key(server: Server) -> tuple[str, str, str]:
    """A new tenant's key limited to SLOTS concurrent jobs: (plaintext, key id, speaker id)."""
    key, _ = operations.create_key_with_options(
        server.services, f"t-{uuid.uuid4().hex[:10]}", max_concurrent_jobs=SLOTS)
    key_id, tenant_id = tenant_of(server.services, key)
    return key, key_id, add_speaker_row(server.services, tenant_id)


def _in_parallel(server: Server, key: str, count: int, method: str, path: str,
                 body: dict[str, object]) -> list[httpx.Response]:
    """`count` requests released at once, each on a connection of its own."""
    barrier = threading.Barrier(count)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_SECONDS,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            client.get("/healthz")  # connected before the barrier, so all start together
            barrier.wait()
            return client.request(method, path, json=body)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def _unfinished(server: Server, key_id: str) -> int:
    with server.services.db.session() as session:
        return repo.count_unfinished_jobs_for_key(session, key_id)


def test_parallel_submits_take_exactly_the_key_slots(server: Server) -> None:
    key, key_id, speaker = _limited_key(server)
    body: dict[str, object] = {"script": [{"speaker_id": speaker, "text": "Hello there."}]}
    started = time.perf_counter()
    responses = _in_parallel(server, key, PARALLEL_SUBMITS, "POST", "/v1/synthesize", body)
    elapsed = time.perf_counter() - started
    statuses = Counter(r.status_code for r in responses)
    print(f"\n{PARALLEL_SUBMITS} parallel submits, limit {SLOTS}: {dict(statuses)} "
          f"in {elapsed:.2f} s")
    accepted = [r.json()["job_id"] for r in responses if r.status_code == 202]
    try:
        assert statuses == {202: SLOTS, 429: PARALLEL_SUBMITS - SLOTS}, \
            [r.text[:200] for r in responses if r.status_code not in (202, 429)]
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert f"at most {SLOTS}" in refused.json()["detail"]
        assert refused.headers["Retry-After"].isdigit()
        assert _unfinished(server, key_id) == SLOTS
    finally:
        with httpx.Client(base_url=server.base_url,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            for job_id in accepted:
                assert client.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_parallel_speech_renders_hold_the_key_slots(server: Server) -> None:
    key, key_id, speaker = _limited_key(server)
    body: dict[str, object] = {"model": "tts-1", "voice": speaker, "input": SPEECH_TEXT,
                               "response_format": "wav"}
    most = 0
    done = threading.Event()

    def sample() -> None:  # how many renders hold a slot, seen from the database
        nonlocal most
        while not done.is_set():
            most = max(most, _unfinished(server, key_id))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        responses = _in_parallel(server, key, PARALLEL_SPEECH, "POST", "/v1/audio/speech", body)
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    statuses = Counter(r.status_code for r in responses)
    print(f"\n{PARALLEL_SPEECH} parallel /v1/audio/speech, limit {SLOTS}: {dict(statuses)}, "
          f"at most {most} rendering at once, {elapsed:.2f} s in all")
    assert statuses == {200: SLOTS, 429: PARALLEL_SPEECH - SLOTS}, \
        [r.text[:200] for r in responses if r.status_code not in (200, 429)]
    assert most <= SLOTS
    refused = next(r for r in responses if r.status_code == 429)
    assert f"at most {SLOTS}" in refused.json()["detail"] and refused.headers["Retry-After"]
    # finished renders free their slots, and each one is metered like a job
    assert _unfinished(server, key_id) == 0
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_SECONDS,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        again = client.post("/v1/audio/speech", json={**body, "input": "Hello again."})
    assert again.status_code == 200, again.text[:300]
    with server.services.db.session() as session:
        metered = session.query(Job).filter(Job.api_key_id == key_id,
                                            Job.status == "succeeded").count()
    assert metered == SLOTS + 1


def test_a_keyed_request_killed_in_flight_is_recovered_by_its_retry(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes]) -> None:
    idempotency_key = f"crash-{uuid.uuid4().hex}"
    files = {"audio": ("alice.wav", reference_wavs["Alice"], "audio/wav")}
    form = {"name": "Alice", "transcript": "", "lang": "en"}
    with voicereel_serve(tmp_path, database_url) as first:
        key = operations.create_key(first.services, f"t-{uuid.uuid4().hex[:10]}")
        _, tenant_id = tenant_of(first.services, key)
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}

        def register() -> None:
            with contextlib.suppress(httpx.TransportError):  # the server dies under it
                httpx.post(f"{first.base_url}/v1/speakers", headers=headers, files=files,
                           data=form, timeout=REQUEST_TIMEOUT_SECONDS)

        in_flight = threading.Thread(target=register)
        in_flight.start()
        deadline = time.monotonic() + REQUEST_TIMEOUT_SECONDS
        while _record(first, tenant_id, idempotency_key) is None:
            assert time.monotonic() < deadline and in_flight.is_alive(), first.log()
            time.sleep(0.01)
        first.proc.kill()  # SIGKILL: no handler runs, the record stays pending
        first.proc.wait()
        crashed_at = time.monotonic()
        in_flight.join()
        record = _record(first, tenant_id, idempotency_key)
        assert record is not None and record[0] is None, "the record should be left pending"
        assert _speakers(first, tenant_id) == 0
    with voicereel_serve(tmp_path, database_url, idempotency_lease_seconds=str(LEASE_SECONDS),
                         idempotency_wait_seconds="10") as second:
        record = _record(second, tenant_id, idempotency_key)
        assert record is not None and record[0] is None
        stale_at = record[1] + timedelta(seconds=LEASE_SECONDS + 0.5)
        while utcnow() < stale_at:
            time.sleep(0.1)
        retry = httpx.post(f"{second.base_url}/v1/speakers", headers=headers, files=files,
                           data=form, timeout=REQUEST_TIMEOUT_SECONDS)
        recovered_after = time.monotonic() - crashed_at
        assert retry.status_code == 201, retry.text[:500]
        replay = httpx.post(f"{second.base_url}/v1/speakers", headers=headers, files=files,
                            data=form, timeout=REQUEST_TIMEOUT_SECONDS)
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == retry.json()["id"]
        assert _speakers(second, tenant_id) == 1
    print(f"\nretry after the crash succeeded {recovered_after:.1f} s after the kill "
          f"(lease {LEASE_SECONDS} s, server restart included)")


def _record(server: Server, tenant_id: str, key: str) -> tuple[int | None, datetime] | None:
    """(status, created_at) of the idempotency record, or None."""
    with server.services.db.session() as session:
        record = repo.get_idempotency_record(session, tenant_id, key)
        return None if record is None else (record.status, record.created_at)


def _speakers(server: Server, tenant_id: str) -> int:
    with server.services.db.session() as session:
        return session.query(Speaker).filter(Speaker.tenant_id == tenant_id).count()
