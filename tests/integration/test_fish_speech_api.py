"""The fish-speech engine end to end through the HTTP API, against the v1.5.0 fake server."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.fakes.fish_speech_server import FakeFishSpeech, refused_url
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.demo import REFERENCE_TRANSCRIPT
from voicereel.services import build_services
from voicereel.settings import Settings


@pytest.fixture
def fake() -> Iterator[FakeFishSpeech]:
    with FakeFishSpeech() as server:
        yield server


@pytest.fixture
def client(fake: FakeFishSpeech, database_url: str, tmp_path: Path,
           tenant_name: str) -> Iterator[TestClient]:
    # Two servers, one of which refuses every connection: jobs must still succeed.
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        engine="fish-speech", fish_speech_urls=f"{refused_url()},{fake.url}",
                        fish_speech_connect_timeout=1.0, fish_speech_backoff_seconds=0.01,
                        sweep_interval_seconds=0.5)
    services = build_services(settings)
    services.db.migrate()
    key = operations.create_key(services, tenant_name)
    with TestClient(create_app(settings, services)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client
    services.db.dispose()


def test_two_speaker_job_through_the_api(client: TestClient, fake: FakeFishSpeech,
                                         reference_wavs: dict[str, bytes]) -> None:
    refused = client.post("/v1/speakers", data={"name": "NoText"},
                          files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
    assert refused.status_code == 422 and "transcript" in refused.json()["detail"]

    ids = {}
    for name, wav in reference_wavs.items():
        r = client.post("/v1/speakers", data={"name": name, "transcript": REFERENCE_TRANSCRIPT},
                        files={"audio": (f"{name}.wav", wav, "audio/wav")})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]

    script = [{"speaker_id": ids["Alice"], "text": "We start at 9:30 am, in room 12."},
              {"speaker_id": ids["Bob"], "text": "Then I will bring 3 coffees."}]
    r = client.post("/v1/synthesize", json={"script": script, "output": {"format": "flac"}})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (job := client.get(r.headers["location"]).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "succeeded", job

    assert len(fake.received) == 2
    for received in fake.received:
        request = received.request
        assert received.headers["Content-Type"] == "application/msgpack"
        assert request.normalize is False
        # Our own normaliser ran: digits never reach fish-speech's (which reads them in Chinese).
        assert not any(ch.isdigit() for ch in request.text), request.text
        assert len(request.references) == 1
        audio, rate = received.reference_audio[0]
        assert 10.0 <= len(audio) / rate <= 30.0
        text = request.references[0].text
        assert text and text in REFERENCE_TRANSCRIPT  # a contiguous part of the transcript

    result = job["result"]
    master, rate = sf.read(io.BytesIO(client.get(result["audio"]["url"]).content))
    captions = json.loads(client.get(result["captions"]["json"]["url"]).content)
    assert abs(len(master) / rate - captions["duration"]) < 0.001
    first = captions["segments"][0]
    assert [w["text"] for w in first["words"]] == script[0]["text"].split()
    assert all(first["start"] <= w["start"] <= w["end"] <= first["end"] for w in first["words"])
    assert np.sqrt(np.mean(master**2)) > 0.01


KOREAN_TRANSCRIPT = " ".join(
    ["오늘은 2026년 3월 2일입니다.", "회의는 3시에 시작하고 15,000원을 냅니다."] * 12)


def test_a_korean_line_and_transcript_reach_fish_speech_normalised(
        client: TestClient, fake: FakeFishSpeech, reference_wavs: dict[str, bytes]) -> None:
    r = client.post("/v1/speakers", data={"name": "민지", "transcript": KOREAN_TRANSCRIPT,
                                          "lang": "ko-KR"},
                    files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
    assert r.status_code == 201, r.text
    line = "회의는 3시 30분에 시작합니다. 가격은 15,000원입니다."
    r = client.post("/v1/synthesize", json={"script": [{"speaker_id": r.json()["id"],
                                                        "text": line}]})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (job := client.get(r.headers["location"]).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    (received,) = fake.received
    assert received.request.text == "회의는 세 시 삼십 분에 시작합니다. 가격은 만 오천 원입니다."
    assert received.request.normalize is False
    reference_text = received.request.references[0].text
    assert reference_text and not any(ch.isdigit() for ch in reference_text), reference_text
    captions = json.loads(client.get(job["result"]["captions"]["json"]["url"]).content)
    words = captions["segments"][0]["words"]
    assert [w["text"] for w in words] == line.split()
    assert words[1]["spoken"] == "세 시"


def _metric(client: TestClient, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(client.get("/metrics").text)
               for s in family.samples if s.name == name)


def test_speech_streams_from_fish_speech_and_ends_early_when_it_breaks(
        client: TestClient, fake: FakeFishSpeech, reference_wavs: dict[str, bytes]) -> None:
    r = client.post("/v1/speakers", data={"name": "Alice", "transcript": REFERENCE_TRANSCRIPT},
                    files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
    assert r.status_code == 201, r.text
    body = {"model": "fish-speech", "voice": "alice", "response_format": "pcm",
            "input": "The first sentence is here. A second one follows it. And a third."}
    whole = client.post("/v1/audio/speech", json={**body, "stream": False})
    assert whole.status_code == 200, whole.text
    with client.stream("POST", "/v1/audio/speech", json=body) as streamed:
        assert "content-length" not in streamed.headers
        assert len(streamed.read()) == len(whole.content)
    assert [received.request.streaming for received in fake.received] == [True, True]

    broken_before = _metric(client, "voicereel_speech_streams_broken_total")
    fake.mode = "break"  # the server dies after the first segment
    received = b""
    with client.stream("POST", "/v1/audio/speech", json={**body, "seed": 1}) as streamed:
        assert streamed.status_code == 200
        # TestClient re-raises what ended the stream; a real client sees it cut short
        with pytest.raises(Exception, match="broke off the stream"):
            for piece in streamed.iter_bytes():
                received += piece
    assert 0 < len(received) < len(whole.content)
    assert _metric(client, "voicereel_speech_streams_broken_total") == broken_before + 1
    usage = client.get("/v1/usage").json()
    assert usage["totals"]["jobs"] == 2  # the broken stream is not billed
