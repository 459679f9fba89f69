"""/metrics, request ids, JSON logs and /readyz's broker check, through the real app."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.job_helpers import register_speaker, wait_for_job
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.db import repo
from voicereel.db.session import Database
from voicereel.db.tables import Job
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs.runners.inline import InlineRunner
from voicereel.observability import (
    JsonFormatter,
    Metrics,
    StateCollector,
    job_log_context,
    observe_job_finished,
)
from voicereel.services import Services

# A Redis database of these tests' own: the Celery cluster (11) and the rate limits (13) have
# theirs, and this test fills and empties the queue list the Celery workers read.
REDIS_URL = os.environ.get("VOICEREEL_TEST_METRICS_REDIS_URL", "redis://127.0.0.1:6379/12")


def _samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    for _ in range(2):
        assert client.get("/v1/jobs/job_nope").status_code == 404
    assert client.get("/v1/no/such/route").status_code == 404
    samples = _samples(client)
    assert _value(samples, "voicereel_http_requests_total", method="GET",
                  route="/v1/jobs/{job_id}", status="404") == 2
    assert _value(samples, "voicereel_http_requests_total", method="GET", route="unmatched",
                  status="404") == 1
    assert _value(samples, "voicereel_http_request_duration_seconds_count", method="GET",
                  route="/v1/jobs/{job_id}") == 2
    routes = {dict(labels).get("route") for _, labels in samples}
    assert not any("job_nope" in str(route) or "/no/such" in str(route) for route in routes)


def test_every_app_has_its_own_registry(services: Services, client: TestClient) -> None:
    client.get("/healthz")
    with TestClient(create_app(services.settings, services)) as second:
        samples = _samples(second)  # a second app registers its metrics without a clash
    assert _value(samples, "voicereel_http_requests_total", method="GET", route="/healthz",
                  status="200") == 0


def test_queued_jobs_show_in_the_state_gauge_and_queue_depth(
        services: Services, tenant_name: str, reference_wavs: dict[str, bytes]) -> None:
    # No runner here (the app's lifespan is not started), so the job stays queued; a sweeper of
    # another app on the same database could still take it, and then the round is repeated.
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
    speaker = operations.register_speaker(services, tenant, "Alice", reference_wavs["Alice"],
                                          "", "en")
    idle = InlineRunner(services)  # never started: submit() dispatches nothing
    scraper = TestClient(create_app(services.settings, services))
    submitted = []
    try:
        for _ in range(5):
            job = operations.submit_job(services, idle, tenant, SynthesisRequest.model_validate(
                {"script": [{"speaker_id": speaker.id, "text": "Waiting in line."}]}))
            submitted.append(job.id)
            samples = _samples(scraper)
            with services.db.session() as session:
                row = repo.load_job(session, job.id)
                still_queued = row is not None and row.status == "queued"
            if still_queued:
                break
    finally:  # leave no queued job for the runners of later tests on this database
        for job_id in submitted:
            operations.delete_job(services, tenant, job_id)
    assert still_queued, "other runners took every job before the scrape"
    queued = _value(samples, "voicereel_jobs", state="queued")
    assert queued >= 1
    assert _value(samples, "voicereel_queue_depth", source="database") == queued
    for state in ("running", "succeeded", "failed", "canceled"):
        assert ("voicereel_jobs", frozenset({("state", state)})) in samples


def test_a_finished_job_is_counted_and_timed(client: TestClient,
                                             reference_wavs: dict[str, bytes]) -> None:
    speaker_id = register_speaker(client, reference_wavs["Alice"], "Alice")
    before = _samples(client)
    r = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": speaker_id, "text": "Counted once."}]})
    assert wait_for_job(client, r.json()["job_id"])["status"] == "succeeded"
    after = _samples(client)
    assert _value(after, "voicereel_jobs", state="succeeded") >= 1
    for histogram in ("voicereel_job_duration_seconds", "voicereel_engine_real_time_factor"):
        count = f"{histogram}_count"
        assert _value(after, count) == _value(before, count) + 1
        assert _value(after, f"{histogram}_sum") > _value(before, f"{histogram}_sum")


def test_a_revision_is_timed_from_its_own_submission(
        client: TestClient, services: Services, reference_wavs: dict[str, bytes]) -> None:
    speaker_id = register_speaker(client, reference_wavs["Alice"], "Alice")
    r = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": speaker_id, "text": "First take."}]})
    job_id = r.json()["job_id"]
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    with services.db.session() as session:  # the job was first made a day ago
        job = session.get(Job, job_id)
        assert job is not None
        job.created_at = job.created_at - timedelta(days=1)
    before = _samples(client)
    r = client.post(f"/v1/jobs/{job_id}/revisions",
                    json={"edits": [{"line": 0, "text": "Second take."}]})
    assert r.status_code == 202, r.text
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    after = _samples(client)
    name = "voicereel_job_duration_seconds"
    assert _value(after, f"{name}_count") == _value(before, f"{name}_count") + 1
    assert _value(after, f"{name}_sum") - _value(before, f"{name}_sum") < 3600


def test_job_histograms(client: TestClient) -> None:
    before = _samples(client)
    observe_job_finished(seconds=4.0, audio_seconds=10.0, render_seconds=2.5)
    observe_job_finished(seconds=1.0, audio_seconds=0.0, render_seconds=0.5)  # no audio: no RTF
    after = _samples(client)

    def delta(name: str) -> float:
        return _value(after, name) - _value(before, name)

    assert delta("voicereel_job_duration_seconds_count") == 2
    assert delta("voicereel_job_duration_seconds_sum") == pytest.approx(5.0)
    assert delta("voicereel_engine_real_time_factor_count") == 1
    assert delta("voicereel_engine_real_time_factor_sum") == pytest.approx(0.25)


def test_request_id_is_kept_or_made_and_echoed(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123.x"}).headers[
        "x-request-id"] == "abc-123.x"
    for bad in ("has spaces", "x" * 101, "semi;colon"):
        made = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert made != bad and len(made) == 32
    first = client.get("/v1/jobs/job_nope").headers["x-request-id"]
    second = client.get("/v1/jobs/job_nope").headers["x-request-id"]
    assert first != second  # a problem answer carries one too


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Records of the voicereel loggers, formatted as the service formats them in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("voicereel")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_logs_are_json_lines_with_the_request_id(client: TestClient,
                                                 json_log: io.StringIO) -> None:
    response = client.get("/v1/jobs/job_nope", headers={"X-Request-ID": "trace-42"})
    access = [line for line in _lines(json_log) if line["logger"] == "voicereel.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == response.headers["x-request-id"] == "trace-42"
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    assert line["route"] == "/v1/jobs/{job_id}" and line["status"] == 404
    assert line["message"].startswith("GET /v1/jobs/job_nope 404")
    assert "job_id" not in line


def test_the_log_context_helpers(client: TestClient, services: Services, json_log: io.StringIO,
                                 reference_wavs: dict[str, bytes]) -> None:
    speaker_id = register_speaker(client, reference_wavs["Alice"], "Alice")
    r = client.post("/v1/synthesize", headers={"X-Request-ID": "submit-7"},
                    json={"script": [{"speaker_id": speaker_id, "text": "Traced."}]})
    job_id = r.json()["job_id"]
    with services.db.session() as session:
        job = repo.load_job(session, job_id)
        assert job is not None and job.request_id == "submit-7"

    # Every line inside carries both ids, none outside.
    worker_log = logging.getLogger("voicereel.jobs.test")
    with job_log_context(job_id, job.request_id):
        worker_log.warning("rendering")
    worker_log.warning("idle")
    lines = {line["message"]: line for line in _lines(json_log)}
    for message in ("rendering",):
        assert lines[message]["job_id"] == job_id
        assert lines[message]["request_id"] == "submit-7"
    assert "job_id" not in lines["idle"] and "request_id" not in lines["idle"]


def test_the_worker_logs_a_job_with_the_id_of_the_request_that_made_it(
        services: Services, tenant_name: str, json_log: io.StringIO,
        reference_wavs: dict[str, bytes]) -> None:
    # Accept the job with a runner that runs nothing, so it waits; take its speaker away, so it
    # fails (a line the worker logs); then let a real inline runner take it, as after a restart.
    app = create_app(services.settings, services)
    app.state.runner = InlineRunner(services)  # never started; the lifespan does not run
    api = TestClient(app)
    api.headers["Authorization"] = f"Bearer {operations.create_key(services, tenant_name)}"
    speaker_id = register_speaker(api, reference_wavs["Alice"], "Alice")
    job_id = api.post("/v1/synthesize", headers={"X-Request-ID": "submit-8"}, json={
        "script": [{"speaker_id": speaker_id, "text": "Never rendered."}]}).json()["job_id"]
    assert api.delete(f"/v1/speakers/{speaker_id}").status_code == 204

    runner = InlineRunner(services)
    runner.start()
    try:
        runner.submit(job_id)
        assert wait_for_job(api, job_id)["status"] == "failed"
    finally:
        runner.stop()
    worker_lines = [line for line in _lines(json_log) if line.get("job_id") == job_id]
    assert any("failed" in line["message"] for line in worker_lines), worker_lines
    assert {line["request_id"] for line in worker_lines} == {"submit-8"}


def test_exceptions_are_logged_in_one_json_line(json_log: io.StringIO) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("voicereel.test").exception("it failed")
    (line,) = _lines(json_log)
    assert line["level"] == "ERROR" and "ValueError: broken" in line["exception"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_broker_probe_and_queue_depth(services: Services) -> None:
    from voicereel.jobs.runners.celery import QUEUE, CeleryRunner

    def celery_runner(broker_url: str) -> CeleryRunner:
        settings = services.settings.model_copy(update={"runner": "celery",
                                                        "broker_url": broker_url})
        return CeleryRunner(Services(settings, services.db, services.storage, services.engine,
                                     services.signing_secret))

    assert celery_runner(REDIS_URL).checks()["broker"]  # the test Redis must be running
    assert not celery_runner(f"redis://127.0.0.1:{_closed_port()}/0").checks()["broker"]

    collector = StateCollector(services, celery_runner(REDIS_URL).backlog)
    queue = redis.Redis.from_url(REDIS_URL)
    queue.delete(QUEUE)
    try:
        queue.rpush(QUEUE, *[uuid.uuid4().hex for _ in range(3)])
        depth = {s.labels["source"]: s.value for family in collector.collect()
                 if family.name == "voicereel_queue_depth" for s in family.samples}
        assert depth["broker"] == 3
    finally:
        queue.delete(QUEUE)
        queue.close()


def test_a_database_outage_costs_only_the_job_gauges(services: Services,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    down = Database(f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/none")
    try:
        metrics = Metrics(Services(services.settings, down, services.storage, services.engine,
                                   services.signing_secret),
                          InlineRunner(services))
        assert caplog.records == []  # building the registry asked the database nothing
        metrics.requests.labels("GET", "/healthz", "200").inc()
        text = metrics.render().decode()
    finally:
        down.dispose()
    assert 'voicereel_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert "voicereel_jobs{" not in text
    assert any("database did not answer" in r.getMessage() for r in caplog.records)


def test_a_crash_is_logged_and_answered_with_the_request_id(services: Services,
                                                            json_log: io.StringIO) -> None:
    app = create_app(services.settings, services)

    @app.get("/crash-for-test")
    def crash() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as crashing:
        response = crashing.get("/crash-for-test", headers={"X-Request-ID": "oops-1"})
        samples = _samples(crashing)
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "oops-1"
    lines = _lines(json_log)
    (crash_line,) = [line for line in lines if line["logger"] == "voicereel.api.problems"]
    assert crash_line["request_id"] == "oops-1"
    assert "RuntimeError: a bug" in crash_line["exception"]
    (access,) = [line for line in lines if line.get("path") == "/crash-for-test"]
    assert access["status"] == 500 and access["request_id"] == "oops-1"
    assert _value(samples, "voicereel_http_requests_total", method="GET",
                  route="/crash-for-test", status="500") == 1


def test_readyz_checks_the_broker_under_celery(services: Services) -> None:
    for broker_url, reachable in ((REDIS_URL, True),
                                  (f"redis://127.0.0.1:{_closed_port()}/0", False)):
        settings = services.settings.model_copy(update={"runner": "celery",
                                                        "broker_url": broker_url})
        celery_services = Services(settings, services.db, services.storage, services.engine,
                                   services.signing_secret)
        with TestClient(create_app(settings, celery_services)) as api:
            response = api.get("/readyz")
        assert response.json()["checks"]["broker"] is reachable
        if not reachable:
            assert response.status_code == 503
