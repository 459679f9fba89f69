"""Idempotency-Key: same key and request -> same answer and one resource, also when racing;
same key with another request -> 422; keys expire after the TTL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update

from tests.api.trust_helpers import add_speaker_row, caller, problem
from voicereel.db.tables import IdempotencyRecord, Job, Speaker, utcnow
from voicereel.services import Services


def _count(services: Services, model: type[Any], tenant_id: str) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)
                              .where(model.tenant_id == tenant_id)) or 0


def _race(n: int, send: Any) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait(timeout=30)
        response = send()
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(responses) == n
    return responses


def test_synthesize_same_key_same_body_gives_one_job_also_when_racing(
        client: TestClient, services: Services) -> None:
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    speaker = add_speaker_row(services, tenant.id)
    body = {"script": [{"speaker_id": speaker, "text": "Hello there."}]}
    headers = {"Idempotency-Key": "race-1"}
    responses = _race(6, lambda: client.post("/v1/synthesize", json=body, headers=headers))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert len({r.headers["Location"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 5
    assert _count(services, Job, tenant.id) == 1
    # the same request written differently (spacing, defaults spelled out) is the same request
    again = client.post("/v1/synthesize", headers=headers, json={
        "output": {"format": "wav", "sample_rate": 24000},
        "script": [{"text": "Hello there.", "speaker_id": speaker}]})
    assert again.status_code == 202 and again.json() == responses[0].json()
    assert _count(services, Job, tenant.id) == 1


def test_same_key_with_another_body_is_422(client: TestClient, services: Services) -> None:
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    speaker = add_speaker_row(services, tenant.id)
    headers = {"Idempotency-Key": "k-2"}
    first = client.post("/v1/synthesize", headers=headers,
                        json={"script": [{"speaker_id": speaker, "text": "One."}]})
    assert first.status_code == 202
    problem(client.post("/v1/synthesize", headers=headers,
                        json={"script": [{"speaker_id": speaker, "text": "Two."}]}), 422,
            "idempotency-key-reused")
    # keys are per tenant's request kind too: the same key on another endpoint is another request
    problem(client.post("/v1/speakers", headers=headers, data={"name": "X"},
                        files={"audio": ("a.wav", b"RIFF", "audio/wav")}), 422,
            "idempotency-key-reused")
    assert _count(services, Job, tenant.id) == 1


def test_failed_requests_free_their_key_and_keys_expire(client: TestClient,
                                                         services: Services) -> None:
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    headers = {"Idempotency-Key": "k-3"}
    body = {"script": [{"speaker_id": "spk_unknown", "text": "Hi."}]}
    problem(client.post("/v1/synthesize", headers=headers, json=body), 422)
    speaker = add_speaker_row(services, tenant.id)
    body = {"script": [{"speaker_id": speaker, "text": "Hi."}]}
    first = client.post("/v1/synthesize", headers=headers, json=body)
    assert first.status_code == 202
    with services.db.session() as session:
        session.execute(update(IdempotencyRecord).values(
            created_at=utcnow() - timedelta(seconds=services.settings.idempotency_ttl_seconds + 1)))
    second = client.post("/v1/synthesize", headers=headers, json=body)
    assert second.status_code == 202 and "Idempotent-Replayed" not in second.headers
    assert second.json()["job_id"] != first.json()["job_id"]
    problem(client.post("/v1/synthesize", headers={"Idempotency-Key": "x" * 256}, json=body), 422)


def test_speakers_same_key_gives_one_speaker_also_when_racing(
        client: TestClient, services: Services, reference_wavs: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the loser must outwait the winner's whole registration on a busy machine
    monkeypatch.setattr(services.settings, "idempotency_wait_seconds", 600.0)
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    audio = next(iter(reference_wavs.values()))
    headers = {"Idempotency-Key": "spk-1"}

    def send(file_name: str = "a.wav") -> httpx.Response:
        return client.post("/v1/speakers", headers=headers, data={"name": "Alice"},
                           files={"audio": (file_name, audio, "audio/wav")})

    responses = _race(2, send)
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    # another file name and multipart boundary, same content: the same request
    again = send("renamed.wav")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == responses[0].json()
    assert _count(services, Speaker, tenant.id) == 1


def test_a_keyed_submission_writes_in_one_transaction(client: TestClient,
                                                      services: Services) -> None:
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    speaker = add_speaker_row(services, tenant.id)
    # The tables written by each transaction of the request (the runner's threads aside).
    writes: list[list[str]] = [[]]

    def serving() -> bool:
        return not threading.current_thread().name.startswith(("voicereel-", "webhook"))

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        verb, *rest = sql.split(None, 3)
        if serving() and verb.upper() in ("INSERT", "UPDATE", "DELETE"):
            writes[-1].append(rest[0] if verb.upper() == "UPDATE" else rest[1])

    def commit(conn: Any) -> None:
        if serving():
            writes.append([])

    engine = services.db.engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        r = client.post("/v1/synthesize", headers={"Idempotency-Key": "one-transaction"},
                        json={"script": [{"speaker_id": speaker, "text": "Hello there."}]})
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    assert r.status_code == 202, r.text
    writing = [tables for tables in writes if tables]
    # The audit row is appended in a transaction of its own once the answer's status is known
    # (api/audit.py); everything the submission itself writes is one transaction.
    audit = [tables for tables in writing if set(tables) == {"audit_events"}]
    assert len(audit) == 1, writing
    writing = [tables for tables in writing if set(tables) != {"audit_events"}]
    assert len(writing) == 1, writing
    assert {"idempotency_records", "jobs"} <= set(writing[0])
