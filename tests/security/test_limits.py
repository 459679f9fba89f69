"""Output amplification (hardening issue, item 3): pause markup and pauses between lines must not
turn a small request into hours of audio.

The hostile scripts are made here: single words separated by the longest pause allowed, up to
the character and line limits. Their pauses alone (exact, no estimate involved) pass the limits,
so the service must answer 422 `audio-too-long` naming the setting, before rendering anything.
Under the estimate, the budget counted while rendering fails a job that renders more than its
limit (here: a job accepted before the limit was lowered).
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.trust_helpers import add_speaker_row
from tests.security.limits_helpers import Server, tenant_of, voicereel_serve
from voicereel import operations
from voicereel.audio.encode import write_encoded
from voicereel.audio.mix import level_master
from voicereel.db import repo
from voicereel.db.tables import Job
from voicereel.domain.script import AudioBudget, SynthesisRequest, text_seconds_bound
from voicereel.engines.base import Voice
from voicereel.errors import AudioTooLong
from voicereel.jobs import pipeline
from voicereel.jobs.spool import LineSpool
from voicereel.jobs.units import RenderedLine
from voicereel.services import build_services
from voicereel.settings import Settings

PROBLEM = "application/problem+json"
PAUSE = "[pause:10s]"  # the longest pause the default VOICEREEL_MAX_PAUSE_MS (10 s) allows
ANSWER_TIMEOUT_SECONDS = 30.0  # liveness: a refusal must not wait for any rendering


def pauses_between_words(max_chars: int) -> str:
    """`w [pause:10s] w [pause:10s] ... w`, as long as fits in `max_chars`."""
    unit = f"w {PAUSE} "
    return (unit * ((max_chars - 1) // len(unit)) + "w")[:max_chars]


def pause_seconds(text: str) -> int:
    return 10 * text.count(PAUSE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("limits")
    with voicereel_serve(root, f"sqlite:///{root / 'voicereel.db'}") as live:
        yield live


@pytest.fixture
def account(server: Server) -> Iterator[tuple[httpx.Client, str, str]]:
    """An HTTP client with a new tenant's key, one of its speakers and its tenant id."""
    key = operations.create_key(server.services, f"t-{uuid.uuid4().hex[:10]}")
    _, tenant_id = tenant_of(server.services, key)
    speaker = add_speaker_row(server.services, tenant_id)
    with httpx.Client(base_url=server.base_url, timeout=ANSWER_TIMEOUT_SECONDS,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, speaker, tenant_id


def _refused(response: httpx.Response, setting: str, limit: str) -> float:
    """Check the 422 and return the estimate the service gave."""
    assert response.status_code == 422, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"].endswith("/audio-too-long"), body
    assert setting in body["detail"] and f"{limit} s" in body["detail"], body
    estimate = re.search(r"up to (\d+) s", body["detail"])
    assert estimate is not None, body
    return float(estimate[1])


def _jobs_of(server: Server, tenant_id: str) -> int:
    with server.services.db.session() as session:
        return session.query(Job).filter(Job.tenant_id == tenant_id).count()


@pytest.mark.parametrize("shape", ["inline-pauses", "inline-and-line-pauses"])
def test_a_script_of_pauses_is_refused_before_rendering(
        server: Server, account: tuple[httpx.Client, str, str], shape: str) -> None:
    client, speaker, tenant_id = account
    if shape == "inline-pauses":  # three lines at the character limit, a word between pauses
        text = pauses_between_words(2000)
        script: list[dict[str, object]] = [{"speaker_id": speaker, "text": text}
                                           for _ in range(3)]
        pauses = 3 * pause_seconds(text)
    else:  # 200 short lines: neither their inline pauses nor pause_after_ms reach the limit alone
        text = f"w {PAUSE} w"
        script = [{"speaker_id": speaker, "text": text, "pause_after_ms": 10_000}
                  for _ in range(200)]
        pauses = 200 * pause_seconds(text) + 199 * 10
        assert 200 * pause_seconds(text) < 3600 and 199 * 10 < 3600
    assert pauses > 3600
    characters = sum(len(str(line["text"])) for line in script)
    started = time.perf_counter()
    response = client.post("/v1/synthesize", json={"script": script})
    elapsed = time.perf_counter() - started
    estimate = _refused(response, "VOICEREEL_MAX_JOB_AUDIO_SECONDS", "3600")
    assert estimate >= pauses
    assert _jobs_of(server, tenant_id) == 0
    print(f"\n{shape}: {characters} characters, {pauses} s of pauses, estimated {estimate:.0f} s; "
          f"refused in {elapsed:.2f} s")


def test_speech_input_of_pauses_is_refused_before_rendering(
        account: tuple[httpx.Client, str, str]) -> None:
    client, speaker, _ = account
    text = pauses_between_words(4080)
    assert pause_seconds(text) > 600
    started = time.perf_counter()
    response = client.post("/v1/audio/speech", json={
        "model": "tts-1", "voice": speaker, "input": text, "response_format": "wav"})
    elapsed = time.perf_counter() - started
    estimate = _refused(response, "VOICEREEL_MAX_SPEECH_AUDIO_SECONDS", "600")
    assert estimate >= pause_seconds(text)
    print(f"\n/v1/audio/speech: {len(text)} characters, {pause_seconds(text)} s of pauses, "
          f"estimated {estimate:.0f} s; refused in {elapsed:.2f} s")
    # an ordinary input is still spoken, and the slot it held is free again afterwards
    for _ in range(2):
        spoken = client.post("/v1/audio/speech", json={
            "model": "tts-1", "voice": speaker, "input": "Hello there.", "response_format": "wav"})
        assert spoken.status_code == 200, spoken.text[:500]


def test_the_estimate_is_an_upper_bound_that_leaves_ordinary_text_alone(tmp_path: Path) -> None:
    """Real piper at the slowest speed renders less than the estimate; a full-length OpenAI input
    of prose stays under the speech limit."""
    settings = Settings(data_dir=tmp_path / "data")
    engine = build_services(settings).engine
    voice = Voice(speaker_id="spk_bound", name="Bound", lang="en", transcript="", profile={},
                  load_reference=None)
    for text in ["Hi.", "Welcome back to the show. Today we talk about lighthouses.",
                 "It costs 1250000 dollars, said 3 of the 47 engineers in 2026."]:
        out = engine.synthesize(text, voice, speed=0.5)
        rendered = len(out.audio) / out.sample_rate
        bound = text_seconds_bound(text, settings.max_pause_ms)
        print(f"\n{text[:30]!r}: rendered {rendered:.2f} s at speed 0.5, estimated {bound:.2f} s")
        assert rendered <= bound
    prose = ("The keeper climbed the stairs at dusk and lit the lamp once more. " * 70)[:4096]
    assert text_seconds_bound(prose, settings.max_pause_ms) <= settings.max_speech_audio_seconds


def test_the_budget_counts_from_every_thread_and_refuses_past_its_limit() -> None:
    budget = AudioBudget(limit_seconds=10.0, setting="VOICEREEL_MAX_JOB_AUDIO_SECONDS")
    refused: list[AudioTooLong] = []

    def spend() -> None:
        for _ in range(100):
            try:
                budget.spend(0.01)
            except AudioTooLong as exc:
                refused.append(exc)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.spent_seconds == pytest.approx(8.0) and not refused
    with pytest.raises(AudioTooLong) as passed:
        budget.spend(2.5)
    detail = passed.value.detail
    assert "VOICEREEL_MAX_JOB_AUDIO_SECONDS" in detail and "10 s" in detail


def test_a_job_rendering_past_its_limit_fails_with_a_clear_error(database_url: str,
                                                                 tmp_path: Path) -> None:
    """A job accepted under a higher limit, rendered after the limit was lowered to 5 s: its
    second pause passes the limit, and the job fails instead of rendering on."""
    services = build_services(Settings(data_dir=tmp_path / "data", database_url=database_url,
                                       max_job_audio_seconds=5.0))
    services.db.migrate()
    try:
        with services.db.session() as session:
            tenant = repo.get_or_create_tenant(session, f"t-{uuid.uuid4().hex[:10]}")
        speaker = add_speaker_row(services, tenant.id)
        text = "Hello there. [pause:3s] Here is more. [pause:3s] And the end."
        job_id = repo.new_id("job")
        with services.db.session() as session:
            repo.add_job(session, Job(id=job_id, tenant_id=tenant.id, status="queued",
                                      request={"script": [{"speaker_id": speaker, "text": text}]},
                                      units_total=2))
        pipeline.run_job(services, job_id, "test-attempt", pipeline.ThreadedLines(1))
        with services.db.session() as session:
            job = repo.load_job(session, job_id)
            assert job is not None
            files = repo.job_files(session, job_id, 1)
        print(f"\njob error: {job.error}")
        assert job.status == "failed", (job.status, job.error)
        assert job.error and "VOICEREEL_MAX_JOB_AUDIO_SECONDS" in job.error and "5 s" in job.error
        assert files == [] and job.audio_seconds is None
    finally:
        services.db.dispose()


def _assembly_peak_bytes(seconds: int) -> tuple[int, int]:
    """tracemalloc's peak while the lines of a `seconds`-long three-speaker master are
    spooled, levelled, encoded and its stems written; and the float32 master's size."""
    rate = 24_000
    rng = np.random.default_rng(7)
    lines = [(rng.standard_normal(5 * rate) * rng.uniform(0.05, 0.3)).astype(np.float32)
             for _ in range(seconds // 5)]
    script = [{"speaker_id": f"spk_{i % 3}", "text": "Hi."} for i in range(len(lines))]
    request = SynthesisRequest.model_validate({"script": script, "output": {"stems": True}})
    tracemalloc.start()
    try:
        spool = LineSpool()  # the lines wait on disk, as in a job
        spooled = [spool.keep(RenderedLine(line, [])).audio for line in lines]
        master = level_master(spooled, [0] * len(lines), rate, -16.0, -1.0)
        with tempfile.TemporaryFile() as spool:
            write_encoded(master.blocks(), rate, "wav", spool)
            assert spool.tell() > 2 * master.length  # 16-bit samples, every one
        for _speaker_id, stem in pipeline.speaker_stems(request, master):
            with tempfile.TemporaryFile() as spool:
                write_encoded(stem, rate, "flac", spool)
        peak = tracemalloc.get_traced_memory()[1]
        spool.close()
    finally:
        tracemalloc.stop()
    return peak, 4 * master.length


def test_a_long_master_is_levelled_and_encoded_a_block_at_a_time() -> None:
    """Spooling the lines, levelling, true-peak limiting, encoding and stems hold blocks, not
    the master: measured with tracemalloc on a one- and a four-minute master."""
    short, short_size = _assembly_peak_bytes(60)
    long, long_size = _assembly_peak_bytes(240)
    print(f"\nassembly peak: {short / 1e6:.1f} MB for 60 s ({short / short_size:.2f}x the "
          f"float32 master), {long / 1e6:.1f} MB for 240 s ({long / long_size:.2f}x)")
    # Whole-master float32 arrays would be 1x each (the old gain curve alone was 1x, its
    # measurement several more); what is left grows only with the stretches the limiter acts on.
    assert long < 0.6 * long_size
    assert long - short < 0.6 * (long_size - short_size)
