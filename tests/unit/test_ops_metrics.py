"""The metrics the alerts in deploy/prometheus need: each is recorded where it happens."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import msgpack
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voicereel.db import repo
from voicereel.db.session import Database
from voicereel.db.tables import Job, utcnow
from voicereel.engines.fish_speech import FishSpeechEngine
from voicereel.errors import ServiceUnavailable, SynthesisFailed
from voicereel.observability import (
    ENGINE_REAL_TIME_FACTOR,
    JOB_DURATION,
    JOB_DURATION_PER_AUDIO_SECOND,
    STORAGE_ERRORS,
    WEBHOOK_ATTEMPTS,
    StateCollector,
    engine_metrics,
    observe_job_finished,
    observe_webhook_attempt,
)
from voicereel.services import Services
from voicereel.settings import Settings
from voicereel.storage.s3 import S3Storage


def _scrape(*collectors: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(collector: object, name: str, **labels: str) -> float:
    return _scrape(collector).get((name, frozenset(labels.items())), 0.0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def test_job_duration_per_audio_second() -> None:
    name = "voicereel_job_duration_per_audio_second"
    count, total = (_value(JOB_DURATION_PER_AUDIO_SECOND, f"{name}_{s}") for s in ("count", "sum"))
    under_one = _value(JOB_DURATION_PER_AUDIO_SECOND, f"{name}_bucket", le="1.0")
    observe_job_finished(seconds=6.0, audio_seconds=12.0, render_seconds=3.0)  # 0.5 x
    observe_job_finished(seconds=9.0, audio_seconds=3.0, render_seconds=1.0)  # 3 x
    observe_job_finished(seconds=1.0, audio_seconds=0.0, render_seconds=0.5)  # no audio: no ratio
    assert _value(JOB_DURATION_PER_AUDIO_SECOND, f"{name}_count") == count + 2
    assert _value(JOB_DURATION_PER_AUDIO_SECOND, f"{name}_sum") == pytest.approx(total + 3.5)
    assert _value(JOB_DURATION_PER_AUDIO_SECOND, f"{name}_bucket", le="1.0") == under_one + 1
    assert _value(JOB_DURATION, "voicereel_job_duration_seconds_count") >= 3
    assert _value(ENGINE_REAL_TIME_FACTOR, "voicereel_engine_real_time_factor_count") >= 2


def test_webhook_attempts_by_state() -> None:
    before = {s: _value(WEBHOOK_ATTEMPTS, "voicereel_webhook_attempts_total", state=s)
              for s in ("delivered", "pending", "failed")}
    for state in ("pending", "pending", "failed", "delivered"):
        observe_webhook_attempt(state)
    after = {s: _value(WEBHOOK_ATTEMPTS, "voicereel_webhook_attempts_total", state=s)
             for s in before}
    assert {s: after[s] - before[s] for s in before} == {"delivered": 1, "pending": 2,
                                                         "failed": 1}


def test_an_unreachable_store_counts_as_a_storage_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = Settings(data_dir=tmp_path, storage="s3",
                        s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    store = S3Storage(settings)
    name = "voicereel_storage_errors_total"
    before = _value(STORAGE_ERRORS, name, backend="s3", operation="read")
    with pytest.raises(ServiceUnavailable):
        store.get("t1/jobs/j1/audio.wav")
    assert _value(STORAGE_ERRORS, name, backend="s3", operation="read") == before + 1


def test_a_pool_that_is_all_down_counts_attempts_and_exhaustion(tmp_path: Path) -> None:
    urls = ",".join(f"http://127.0.0.1:{_closed_port()}" for _ in range(2))
    engine = FishSpeechEngine(Settings(data_dir=tmp_path, engine="fish-speech",
                                       fish_speech_urls=urls, fish_speech_retries=1,
                                       fish_speech_backoff_seconds=0.0,
                                       fish_speech_cooldown_seconds=0.0))
    requests, exhausted, wait = (engine_metrics.FISH_SPEECH_REQUESTS,
                                 engine_metrics.FISH_SPEECH_EXHAUSTED,
                                 engine_metrics.FISH_SPEECH_WAIT)
    before_down = _value(requests, "voicereel_fish_speech_requests_total", outcome="down")
    before_exhausted = _value(exhausted, "voicereel_fish_speech_pool_exhausted_total")
    before_waits = _value(wait, "voicereel_fish_speech_acquire_wait_seconds_count")
    try:
        with pytest.raises(SynthesisFailed, match="Every fish-speech server failed"):
            engine._render(msgpack.packb({"text": "hello"}))
    finally:
        engine.close()
    # Two servers, each tried twice (one retry), then one acquire finds none left.
    assert _value(requests, "voicereel_fish_speech_requests_total",
                  outcome="down") == before_down + 4
    assert _value(exhausted, "voicereel_fish_speech_pool_exhausted_total") == before_exhausted + 1
    assert _value(wait, "voicereel_fish_speech_acquire_wait_seconds_count") == before_waits + 5


def test_the_oldest_due_queued_job_sets_the_backlog_age(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.resolved_database_url)
    db.migrate()
    # The collector reads only the database.
    services = Services(settings=settings, db=db, storage=None, engine=None,  # type: ignore[arg-type]
                        signing_secret=b"")
    collector = StateCollector(services, dict)
    age = "voicereel_queue_oldest_age_seconds"
    assert _value(collector, age) == 0.0
    now = utcnow()
    with db.session() as session:
        tenant = repo.get_or_create_tenant(session, "acme")
        for job_id, status, created, retry_at in (
                ("job_old_done", "succeeded", now - timedelta(hours=5), None),
                ("job_waiting", "queued", now - timedelta(seconds=600), None),
                ("job_deferred", "queued", now - timedelta(hours=2), now + timedelta(minutes=5)),
                ("job_new", "queued", now - timedelta(seconds=5), None)):
            repo.add_job(session, Job(id=job_id, tenant_id=tenant.id, status=status,
                                      request={}, created_at=created, retry_at=retry_at))
    # The finished job and the job deferred into the future are not waiting.
    assert _value(collector, age) == pytest.approx(600, abs=30)
    db.engine.dispose()
