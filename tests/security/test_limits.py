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
from voicereel.audio.loudness import master_envelope
from voicereel.audio.mix import concat_with_pauses
from voicereel.db import repo
from voicereel.db.tables import Job
from voicereel.domain.script import AudioBudget, SynthesisRequest, text_seconds_bound
from voicereel.engines.base import Voice
from voicereel.errors import AudioTooLong
from voicereel.jobs import pipeline
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


def test_an_hour_long_master_is_levelled_without_full_length_float64_copies() -> None:
    """The master's gain curve and the stems are float32 and made one at a time: measured with
    tracemalloc on a 60 s, three-speaker master, in multiples of the float32 master's size."""
    rate = 24_000
    rng = np.random.default_rng(7)
    line = (rng.standard_normal(5 * rate) * 0.1).astype(np.float32)
    script = [{"speaker_id": f"spk_{i % 3}", "text": "Hi."} for i in range(12)]
    request = SynthesisRequest.model_validate({"script": script, "output": {"stems": True}})
    master, offsets = concat_with_pauses([line] * 12, [0] * 12)
    size = master.nbytes
    tracemalloc.start()
    try:
        envelope = master_envelope(master, rate, -16.0, -1.0)
        envelope_peak = tracemalloc.get_traced_memory()[1] / size
        tracemalloc.reset_peak()
        stems = pipeline.speaker_stems(request, [line] * 12, offsets, envelope)
        made = 0
        for _speaker_id, stem in (stems.items() if isinstance(stems, dict) else stems):
            assert stem.dtype == np.float32 and len(stem) == len(master)
            made += 1
            del stem  # encoded and dropped, as assemble does
        stems_peak = tracemalloc.get_traced_memory()[1] / size
    finally:
        tracemalloc.stop()
    print(f"\nmaster {size / 1e6:.1f} MB: gain curve peak {envelope_peak:.1f}x, "
          f"stems peak {stems_peak:.1f}x its size")
    assert envelope.dtype == np.float32 and made == 3
    # a float64 copy is 2x; the measurement itself (pyloudnorm) needs about three of them
    assert envelope_peak <= 10
    assert stems_peak <= 2.5  # one stem (1x) at a time, not three float64 ones (6x) and more
