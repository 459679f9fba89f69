"""Signed job callbacks: an outbox row per delivery, retried with exponential backoff, every
attempt recorded on the job, private addresses refused unless allowed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_job_row, add_speaker_row, caller, problem
from voicereel import webhooks
from voicereel.db import repo
from voicereel.services import Services
from voicereel.settings import Settings


class Receiver:
    """A real HTTP server on loopback that answers with the given statuses in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses[min(len(receiver.received), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/voicereel"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver([500, 503, 200])
    yield made
    made.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    max_upload_bytes=4 * 1024 * 1024, sweep_interval_seconds=0.5,
                    webhook_allow_private=True, webhook_backoff_seconds=0.2,
                    webhook_max_attempts=4, webhook_timeout_seconds=5)


def _tenant_id(services: Services, client: TestClient) -> str:
    return caller(services, client.headers["Authorization"].split()[1])[1].id


def _failed_job(services: Services, tenant_id: str, url: str) -> str:
    """A job failed by its worker the real way, which writes its delivery row."""
    job_id = add_job_row(services, tenant_id, status="running", request={
        "script": [{"speaker_id": "spk_x", "text": "Hi."}], "callback_url": url})
    with services.db.session() as session:
        assert repo.fail_job(session, job_id, "elsewhere", "test")
    return job_id


def _attempt_until_settled(services: Services, job_id: str) -> str:
    """Make every attempt as soon as it is due; the delivery's final state.

    The app's sweep may make the last attempt itself, so the row's state is what tells.
    """
    deadline = time.monotonic() + 30  # bounded: the settings allow 4 attempts within 1.4 s
    while time.monotonic() < deadline:
        state = webhooks.attempt(services, job_id)
        if state is None:
            with services.db.session() as session:
                delivery = repo.webhook_delivery(session, job_id)
                state = delivery.state if delivery else None
        if state not in (None, "pending"):
            return state
        time.sleep(0.01)
    raise AssertionError("the delivery never settled")


def test_delivery_is_signed_retried_with_backoff_and_recorded(
        client: TestClient, services: Services, receiver: Receiver) -> None:
    tenant_id = _tenant_id(services, client)
    job_id = _failed_job(services, tenant_id, receiver.url)
    # The app's sweep (every 0.5 s) makes attempts too; whoever makes one, the schedule holds.
    assert _attempt_until_settled(services, job_id) == "delivered"
    with services.db.session() as session:
        at = [a.at for a in repo.webhook_attempts(session, job_id)]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(at, at[1:], strict=False)]
    assert len(gaps) == 2 and gaps[0] >= 0.2 * 0.9 and gaps[1] >= 0.4 * 0.9, gaps
    assert len(receiver.received) == 3
    secret = client.get("/v1/webhook-secret").json()["secret"]
    for headers, body in receiver.received:
        signature = headers[webhooks.SIGNATURE_HEADER.lower()]
        assert webhooks.verify_signature(secret, signature, body)
        assert not webhooks.verify_signature("whsec_wrong", signature, body)
        assert not webhooks.verify_signature(secret, signature, body + b" ")
        payload = json.loads(body)
        assert payload["type"] == "job.failed" and payload["job"]["id"] == job_id
        assert payload["job"]["error"] == "test"
    view = client.get(f"/v1/jobs/{job_id}").json()
    assert view["callback_url"] == receiver.url
    assert [(a["attempt"], a["status_code"]) for a in view["webhook_attempts"]] == [
        (1, 500), (2, 503), (3, 200)]
    assert view["webhook_attempts"][0]["error"] == "HTTP 500"
    # delivered once is delivered: a second call sends nothing
    assert webhooks.attempt(services, job_id) is None
    assert len(receiver.received) == 3


def test_attempts_stop_at_the_maximum(client: TestClient, services: Services) -> None:
    failing = Receiver([500])
    try:
        job_id = _failed_job(services, _tenant_id(services, client), failing.url)
        state = None
        for _ in range(600):  # the pool posts; sweeps (every 0.5 s) hand over the retries
            webhooks.send_soon(services, job_id)
            with services.db.session() as session:
                delivery = repo.webhook_delivery(session, job_id)
                state = delivery.state if delivery else None
            if state == "failed":
                break
            time.sleep(0.1)
        assert state == "failed"
    finally:
        failing.close()
    attempts = client.get(f"/v1/jobs/{job_id}").json()["webhook_attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert len(failing.received) == 4


def test_unreachable_receiver_is_recorded_as_an_error(client: TestClient,
                                                      services: Services) -> None:
    gone = Receiver([200])
    url = gone.url
    gone.close()
    job_id = _failed_job(services, _tenant_id(services, client), url)
    assert _attempt_until_settled(services, job_id) == "failed"
    attempts = client.get(f"/v1/jobs/{job_id}").json()["webhook_attempts"]
    assert len(attempts) == 4
    assert all(a["status_code"] is None and "ConnectError" in a["error"] for a in attempts)


def test_unfinished_jobs_and_jobs_without_callback_send_nothing(
        client: TestClient, services: Services, receiver: Receiver) -> None:
    tenant_id = _tenant_id(services, client)
    running = add_job_row(services, tenant_id, status="running", request={
        "script": [{"speaker_id": "spk_x", "text": "Hi."}], "callback_url": receiver.url})
    plain = add_job_row(services, tenant_id, status="succeeded")
    assert webhooks.attempt(services, running) is None
    assert webhooks.attempt(services, plain) is None
    assert receiver.received == []


def test_callback_url_is_accepted_and_stored(client: TestClient, services: Services,
                                             receiver: Receiver) -> None:
    speaker = add_speaker_row(services, _tenant_id(services, client))
    response = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": speaker, "text": "Hi."}], "callback_url": receiver.url})
    assert response.status_code == 202, response.text
    view = client.get(response.headers["Location"]).json()
    assert view["callback_url"] == receiver.url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/hook",
    "http://10.1.2.3/hook", "http://192.168.0.1/hook", "http://169.254.169.254/latest/meta-data",
    "http://0.0.0.0/hook", "https://user:pw@example.com/hook", "ftp://example.com/hook",
])
def test_private_and_odd_callback_urls_are_refused(url: str, tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(webhooks.CallbackUrlRefused):
        webhooks.check_callback_url(settings, url)
    if url.startswith("http://") and "@" not in url:
        webhooks.check_callback_url(Settings(data_dir=tmp_path, webhook_allow_private=True), url)


def test_api_refuses_private_callbacks_by_default(database_url: str, tmp_path: Any,
                                                  tenant_name: str) -> None:
    from voicereel import operations
    from voicereel.api.app import create_app
    from voicereel.services import build_services

    services = build_services(Settings(data_dir=tmp_path / "data", database_url=database_url))
    services.db.migrate()
    key = operations.create_key(services, tenant_name)
    try:
        with TestClient(create_app(services.settings, services)) as strict:
            strict.headers["Authorization"] = f"Bearer {key}"
            body = problem(strict.post("/v1/synthesize", json={
                "script": [{"speaker_id": "spk_x", "text": "Hi."}],
                "callback_url": "http://127.0.0.1:8080/hook"}), 422, "callback-url-refused")
            assert body["errors"][0]["loc"] == ["body", "callback_url"]
    finally:
        services.db.dispose()


def test_signature_example_in_the_docs() -> None:
    from tests.api.test_signing import DOCS

    header = webhooks.sign_payload("whsec_example-secret-do-not-use", 1735689600,
                                   b'{"type":"job.succeeded","job":{"id":"job_1"}}')
    assert header in DOCS.read_text()


def test_runner_delivers_when_a_real_job_succeeds(client: TestClient,
                                                  reference_wavs: dict[str, bytes]) -> None:
    ok = Receiver([200])
    try:
        r = client.post("/v1/speakers", data={"name": "Alice"},
                        files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
        assert r.status_code == 201, r.text
        r = client.post("/v1/synthesize", json={
            "script": [{"speaker_id": r.json()["id"], "text": "Call me when it is done."}],
            "callback_url": ok.url})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        for _ in range(600):  # the runner renders, then posts; bounded at about a minute
            view = client.get(f"/v1/jobs/{job_id}").json()
            if view["webhook_attempts"]:
                break
            threading.Event().wait(0.1)
        assert view["status"] == "succeeded"
        assert [a["status_code"] for a in view["webhook_attempts"]] == [200]
        assert len(ok.received) == 1
        payload = json.loads(ok.received[0][1])
        assert payload["type"] == "job.succeeded" and payload["job"]["id"] == job_id
        assert payload["job"]["result"]["audio"]["url"]
        secret = client.get("/v1/webhook-secret").json()["secret"]
        headers, body = ok.received[0]
        assert webhooks.verify_signature(secret, headers[webhooks.SIGNATURE_HEADER.lower()], body)
    finally:
        ok.close()


def test_connection_goes_to_the_resolved_address_with_the_host_kept(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One look-up per attempt: a second answer (here 127.0.0.2, where nothing listens) is
    never used, and the receiver still sees the URL's host."""
    receiver = Receiver([200])
    port = receiver.server.server_address[1]
    host = "hooks.pinned.test"
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def resolve(name: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, service, *args, **kwargs)
        looked_up.append(name)
        address = "127.0.0.1" if len(looked_up) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    try:
        status, error = webhooks.post(Settings(data_dir=tmp_path, webhook_allow_private=True),
                                      f"http://{host}:{port}/hook", "whsec_test", b"{}")
    finally:
        receiver.close()
    assert (status, error) == (200, None)
    assert looked_up == [host]
    assert receiver.received[0][0]["host"] == f"{host}:{port}"
