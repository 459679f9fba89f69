"""Jobs through the real pipeline and inline runner: formats, failures, restarts, cancel."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.api.job_helpers import register_speaker, wait_for_job
from voicereel import operations
from voicereel.db import repo
from voicereel.db.tables import Job, utcnow
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs import views
from voicereel.jobs.pipeline import ThreadedLines, run_job
from voicereel.jobs.runners.inline import InlineRunner
from voicereel.services import Services


@pytest.mark.parametrize(("fmt", "rate"), [("flac", 44100), ("ogg", 16000), ("mp3", 22050)])
def test_formats_and_rates(client: TestClient, reference_wavs: dict[str, bytes], fmt: str,
                           rate: int) -> None:
    alice = register_speaker(client, reference_wavs["Alice"], "Alice")
    r = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": alice, "text": "One line, rendered twice."},
                   {"speaker_id": alice, "text": "And again.", "pause_after_ms": 0}],
        "output": {"format": fmt, "sample_rate": rate}, "captions": ["json"]})
    assert r.status_code == 202
    job = wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert set(job["result"]["captions"]) == {"json", "report"}
    audio = client.get(job["result"]["audio"]["url"])
    assert audio.headers["content-type"].startswith(job["result"]["audio"]["content_type"])
    captions = json.loads(client.get(job["result"]["captions"]["json"]["url"]).content)
    data, got_rate = sf.read(io.BytesIO(audio.content))
    assert got_rate == rate
    if fmt != "mp3":  # MP3 frames pad the end; the others keep every sample
        assert abs(len(data) / rate - captions["duration"]) < 0.001


def test_a_revision_with_only_a_new_output_re_encodes_without_rendering(
        client: TestClient, reference_wavs: dict[str, bytes]) -> None:
    alice = register_speaker(client, reference_wavs["Alice"], "Alice")
    r = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": alice, "text": "Rendered once."},
                   {"speaker_id": alice, "text": "Then heard in every format."}],
        "output": {"format": "wav", "stems": True}, "captions": ["vtt", "json"]})
    first = wait_for_job(client, r.json()["job_id"])
    assert first["status"] == "succeeded", first
    job_id = first["id"]
    wav, rate = sf.read(io.BytesIO(client.get(first["result"]["audio"]["url"]).content))
    billed = client.get("/v1/usage").json()["totals"]["characters"]

    for number, fmt in enumerate(["mp3", "ogg", "flac"], start=2):
        r = client.post(f"/v1/jobs/{job_id}/revisions",
                        json={"output": {"format": fmt, "stems": True}})
        assert r.status_code == 202, r.text
        assert r.json()["lines_to_render"] == []
        job = wait_for_job(client, job_id)
        assert job["status"] == "succeeded" and job["revision"] == number, job
        revision = client.get(f"/v1/jobs/{job_id}/revisions/{number}").json()
        assert [t["rendered_in"] for t in revision["takes"]] == [1, 1]
        assert revision["characters"] == 0
        audio = client.get(job["result"]["audio"]["url"])
        assert audio.headers["content-type"] == job["result"]["audio"]["content_type"]
        data, got_rate = sf.read(io.BytesIO(audio.content))
        assert got_rate == rate and len(job["result"]["stems"]) == 1
        if fmt == "flac":  # lossless: the same master, sample for sample (to 16 bits)
            assert np.abs(data - wav).max() < 2 ** -14
        else:  # a lossy encoding of the same master: as long, give or take its frames
            assert abs(len(data) - len(wav)) / rate < 0.1
        assert client.get(job["result"]["captions"]["vtt"]["url"]).content == client.get(
            first["result"]["captions"]["vtt"]["url"]).content
    assert client.get("/v1/usage").json()["totals"]["characters"] == billed

    restyled = client.post(f"/v1/jobs/{job_id}/revisions",
                           json={"captions": {"formats": ["srt", "json"]}})
    assert restyled.status_code == 202 and restyled.json()["lines_to_render"] == []
    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded" and set(job["result"]["captions"]) >= {"srt", "json"}
    assert "vtt" not in job["result"]["captions"]
    assert client.post(f"/v1/jobs/{job_id}/revisions", json={}).status_code == 422


def test_events_follow_a_job_line_by_line_until_it_finishes(
        client: TestClient, other_client: TestClient, reference_wavs: dict[str, bytes]) -> None:
    alice = register_speaker(client, reference_wavs["Alice"], "Alice")
    r = client.post("/v1/synthesize", json={"script": [
        {"speaker_id": alice, "text": f"This is line number {n}, followed as it renders."}
        for n in range(3)], "captions": ["json"]})
    job_id = r.json()["job_id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        blocks = "".join(answer.iter_text()).split("\n\n")
    jobs = [json.loads(b.removeprefix("event: job\ndata: ")) for b in blocks
            if b.startswith("event: job")]
    assert jobs[-1]["status"] == "succeeded" and jobs[-1]["result"]["audio"]["url"]
    assert [j for j in jobs[:-1] if j["status"] in ("succeeded", "failed", "canceled")] == []
    done = [j["units_done"] for j in jobs]
    assert done == sorted(done) and done[-1] == 3 and jobs[-1]["progress"] == 1.0
    # the lines show one by one: the stream reads the row far more often than a line renders
    assert [d for d in done if 0 < d < 3], done
    states = [(j["status"], j["units_done"]) for j in jobs]
    assert len(set(states)) == len(states)  # an event says something changed
    assert {k: v for k, v in jobs[-1].items() if k != "result"} == {
        k: v for k, v in client.get(f"/v1/jobs/{job_id}").json().items() if k != "result"}

    # a finished job: its state, and the stream ends; another tenant's or no job: 404
    finished = client.get(f"/v1/jobs/{job_id}/events").text
    assert finished.count("event: job") == 1 and '"status":"succeeded"' in finished
    assert other_client.get(f"/v1/jobs/{job_id}/events").status_code == 404
    assert client.get("/v1/jobs/job_missing/events").status_code == 404


def _queued_job(services: Services, tenant_name: str, speaker_id: str) -> str:
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
    idle = InlineRunner(services)  # never started: submit() queues nothing
    request = SynthesisRequest.model_validate(
        {"script": [{"speaker_id": speaker_id, "text": "Queued before the restart."}]})
    return operations.submit_job(services, idle, tenant, request).id


def test_restart_dispatches_queued_and_abandoned_jobs(
        client: TestClient, services: Services, tenant_name: str,
        reference_wavs: dict[str, bytes]) -> None:
    bob = register_speaker(client, reference_wavs["Bob"], "Bob")
    queued = _queued_job(services, tenant_name, bob)
    abandoned = _queued_job(services, tenant_name, bob)
    with services.db.session() as session:  # a worker that died mid-job, its lease run out
        job = session.get(Job, abandoned)
        assert job is not None
        job.status, job.lease_owner, job.attempts = "running", "dead-host:1:x", 1
        job.lease_expires_at = utcnow() - timedelta(seconds=1)
    # The app's runner sweeps every 0.5 s and must pick both up.
    for job_id in (queued, abandoned):
        done = wait_for_job(client, job_id)
        assert done["status"] == "succeeded", done
    assert client.get(f"/v1/jobs/{abandoned}").json()["attempts"] == 2


def test_failed_job_has_readable_error(services: Services, tenant_name: str,
                                       reference_wavs: dict[str, bytes]) -> None:
    # No app here, so no runner races the test: the pipeline is called as a worker would.
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
    bob = operations.register_speaker(services, tenant, "Bob", reference_wavs["Bob"], "", "en")
    job_id = _queued_job(services, tenant_name, bob.id)
    operations.delete_speaker(services, tenant, bob.id)  # its voice is gone before it runs
    run_job(services, job_id, "test-worker", ThreadedLines(1))
    job = views.job_view(services, tenant.id, job_id, "http://test").model_dump()
    assert job["status"] == "failed"
    assert bob.id in job["error"] and "deleted" in job["error"]
    assert job["result"] is None
    run_job(services, job_id, "test-worker", ThreadedLines(1))  # a second delivery changes nothing
    assert views.job_view(services, tenant.id, job_id, "http://test").attempts == 1


def test_delete_cancels_unfinished_job(client: TestClient, services: Services,
                                       tenant_name: str, reference_wavs: dict[str, bytes]) -> None:
    bob = register_speaker(client, reference_wavs["Bob"], "Bob")
    job_id = _queued_job(services, tenant_name, bob)
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    with services.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "canceled" and job.deleted_at is not None
        # The app's sweeper may have claimed the job before the delete; never after it.
        attempts_at_cancel = job.attempts
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    time.sleep(1.5)  # three sweeps: a canceled job is never picked up again
    with services.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "canceled"
        assert job.attempts == attempts_at_cancel
    files = services.settings.data_dir / "files"
    assert not list(files.glob(f"*/jobs/{job_id}"))


def test_stems_loudness_and_inline_pauses(client: TestClient,
                                          reference_wavs: dict[str, bytes]) -> None:
    import pyloudnorm

    from voicereel.audio.loudness import true_peak_dbtp

    alice = register_speaker(client, reference_wavs["Alice"], "Alice")
    bob = register_speaker(client, reference_wavs["Bob"], "Bob")
    r = client.post("/v1/synthesize", json={
        "script": [{"speaker_id": alice, "text": "It costs $5 today. [pause:1s] Really."},
                   {"speaker_id": bob, "text": "That is cheap!", "speed": 1.5},
                   {"speaker_id": alice, "text": "I agree."}],
        "output": {"format": "wav", "sample_rate": 24000, "stems": True,
                   "loudness_lufs": -20}})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    master, rate = sf.read(io.BytesIO(client.get(result["audio"]["url"]).content))
    caption = json.loads(client.get(result["captions"]["json"]["url"]).content)
    assert set(result["stems"]) == {alice, bob}
    stems = {sid: sf.read(io.BytesIO(client.get(link["url"]).content))[0]
             for sid, link in result["stems"].items()}

    assert abs(pyloudnorm.Meter(rate).integrated_loudness(master) + 20) <= 1.0
    assert true_peak_dbtp(master) <= -1.0 + 0.05  # 16-bit rounding of the WAV
    for stem in stems.values():
        assert len(stem) == len(master)
    assert np.abs(stems[alice] + stems[bob] - master).max() < 2e-4
    for seg in caption["segments"]:
        other = bob if seg["speaker_id"] == alice else alice
        span = slice(round(seg["start"] * rate), round(seg["end"] * rate))
        assert np.abs(stems[other][span]).max() == 0.0

    first = caption["segments"][0]
    assert first["text"] == "It costs $5 today. Really."
    words = {w["text"]: w for w in first["words"]}
    assert list(words) == ["It", "costs", "$5", "today.", "Really."]
    # "$5" is one caption word spoken as "five dollars"; the marker leaves a 1 s hole.
    assert words["$5"]["end"] - words["$5"]["start"] > 0.3
    hole = words["Really."]["start"] - words["today."]["end"]
    assert 1.0 <= hole < 1.6


def test_caption_options_formats_report_fit_and_per_speaker_tracks(
        client: TestClient, reference_wavs: dict[str, bytes]) -> None:
    import pysubs2
    import srt
    import webvtt
    from lxml import etree

    alice = register_speaker(client, reference_wavs["Alice"], "Alice")
    bob = register_speaker(client, reference_wavs["Bob"], "Bob")
    script = [{"speaker_id": alice, "text": "Absolutely, without any doubt, extraordinary.",
               "pause_after_ms": 0, "speed": 1.6},
              {"speaker_id": bob, "text": "Understood.", "pause_after_ms": 0},
              {"speaker_id": alice, "text": "Then we begin the recording at three o'clock, "
                                            "right after the lunch break, in studio two."}]
    formats = ["vtt", "srt", "json", "ttml", "ass", "txt"]
    r = client.post("/v1/synthesize", json={"script": script, "captions": {
        "formats": formats, "style": "bbc", "max_chars_per_line": 30, "fit": "pauses",
        "karaoke": True, "per_speaker": True}})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    links = job["result"]["captions"]
    assert set(links) == {*formats, "report", *(f"{f}:{s}" for f in formats
                                                for s in (alice, bob))}

    def get(kind: str) -> str:
        response = client.get(links[kind]["url"])
        assert response.status_code == 200
        return response.text

    report = json.loads(get("report"))
    assert report["style"] == "bbc" and report["limits"]["max_chars_per_line"] == 30
    assert report["fit"] == "pauses" and report["over_limits"]["chars_per_line"] == 0
    caption = json.loads(get("json"))
    segments = caption["segments"]
    # the silence the fit added is the only silence between these lines (0 ms asked for),
    # and every cue now reads within the limits
    after_lines = {a["line"]: a["ms"] for a in report["added_silence"]
                   if a["before_word"] is None}
    assert after_lines, report  # a 1.6x line of long words needs more time
    for index in range(len(segments) - 1):
        gap = segments[index + 1]["start"] - segments[index]["end"]
        assert gap == pytest.approx(after_lines.get(index, 0) / 1000, abs=1e-3)
    assert report["over_limits"]["chars_per_second"] == 0, report["violations"]
    assert report["over_limits"]["words_per_minute"] == 0, report["violations"]
    cues = webvtt.from_string(get("vtt")).captions
    assert len(cues) == report["cues"] and all(
        len(line) <= 30 for cue in cues for line in cue.text.splitlines())
    assert len(list(srt.parse(get("srt")))) == report["cues"]
    assert len(pysubs2.SSAFile.from_string(get("ass")).events) == report["cues"]
    assert etree.fromstring(get("ttml").encode()).tag == "{http://www.w3.org/ns/ttml}tt"
    assert get("txt").splitlines()[1] == "Bob: Understood."
    bob_track = json.loads(get(f"json:{bob}"))
    assert [s["speaker_id"] for s in bob_track["segments"]] == [bob]
    assert "Absolutely" not in get(f"vtt:{bob}") and "Understood." in get(f"vtt:{bob}")
