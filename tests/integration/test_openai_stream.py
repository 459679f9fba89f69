"""Streamed `/v1/audio/speech` on a live server: chunked audio, OpenAI's SSE events, and the
official `openai` client's streaming response, each against a whole (`"stream": false`) answer
of the same input, voice and seed.

What is asserted on sample counts: pcm, wav and opus decode to exactly the samples of the whole
answer. MP3 decodes to that count plus the encoder's delay and the padding to whole frames:
at least the count and less than four 576-sample MPEG-2 frames more.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.integration.conftest import LiveServer
from voicereel.client import VoiceReel

TEXT = "Streaming starts quickly, then keeps going. This is the second sentence."
SEED = 11
MP3_FRAME = 576  # samples per MPEG-2 layer III frame (24 kHz)


@dataclass
class Account:
    http: httpx.Client
    key: str
    base_url: str
    whole_samples: int
    whole_pcm: bytes


def _body(**kw: object) -> dict[str, object]:
    return {"model": "tts-1", "voice": "carol", "input": TEXT, "seed": SEED, **kw}


@pytest.fixture(scope="module")
def account(live_server: LiveServer, reference_files: dict[str, Path]) -> Iterator[Account]:
    key = live_server.create_key()
    with VoiceReel(live_server.base_url, key) as voicereel:
        voicereel.create_speaker("Carol", reference_files["Alice"])
    http = httpx.Client(base_url=live_server.base_url, timeout=120,
                        headers={"Authorization": f"Bearer {key}"})
    whole = http.post("/v1/audio/speech", json=_body(response_format="pcm", stream=False))
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-length"] == str(len(whole.content))
    yield Account(http, key, live_server.base_url, len(whole.content) // 2, whole.content)
    http.close()


def _streamed(account: Account, **kw: object) -> tuple[httpx.Headers, list[bytes]]:
    with account.http.stream("POST", "/v1/audio/speech", json=_body(**kw)) as response:
        assert response.status_code == 200, response.read()
        return response.headers, list(response.iter_bytes())


@pytest.mark.parametrize("fmt", ["pcm", "wav", "opus", "mp3"])
def test_a_streamed_answer_has_the_samples_of_the_whole_one(account: Account, fmt: str) -> None:
    headers, pieces = _streamed(account, response_format=fmt)
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    data = b"".join(pieces)
    if fmt == "pcm":
        assert headers["content-type"] == "audio/pcm"
        assert len(data) == 2 * account.whole_samples
        return
    if fmt == "wav":  # open-ended: RIFF and data sizes unknown when the header went out
        assert data[4:8] == data[40:44] == b"\xff\xff\xff\xff"
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000
    if fmt == "mp3":
        assert account.whole_samples <= len(decoded) < account.whole_samples + 4 * MP3_FRAME
    else:
        assert len(decoded) == account.whole_samples


def test_the_streamed_audio_is_levelled_like_the_whole(account: Account) -> None:
    _, pieces = _streamed(account, response_format="pcm")
    streamed = np.frombuffer(b"".join(pieces), "<i2").astype(np.float32) / 32767
    whole = np.frombuffer(account.whole_pcm, "<i2").astype(np.float32) / 32767

    def rms_db(x: np.ndarray) -> float:
        return float(10 * np.log10(np.mean(x**2)))

    # per chunk or as one master, the same loudness target: within 1.5 dB of each other
    assert abs(rms_db(streamed) - rms_db(whole)) < 1.5


def test_sse_events_carry_the_stream_and_its_usage(account: Account) -> None:
    headers, pieces = _streamed(account, response_format="pcm", stream_format="sse")
    assert headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in b"".join(pieces).decode().split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    events = [json.loads(b.removeprefix("data: ")) for b in blocks]
    *deltas, done = events
    assert deltas and {e["type"] for e in deltas} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    _, plain = _streamed(account, response_format="pcm")
    assert audio == b"".join(plain)  # the same seed renders the same stream
    assert len(audio) == 2 * account.whole_samples
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == usage["characters"] == len(TEXT)
    assert usage["audio_seconds"] == round(account.whole_samples / 24000, 3)


def test_the_openai_client_reads_the_stream(account: Account) -> None:
    client = openai.OpenAI(base_url=f"{account.base_url}/v1", api_key=account.key,
                           max_retries=0)
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="Carol", input=TEXT, response_format="wav",
            extra_body={"seed": SEED}) as response:
        assert response.headers["content-type"] == "audio/wav"
        pieces = list(response.iter_bytes())
    client.close()
    assert len(pieces) >= 2  # the first audio came before the render was done
    decoded, rate = sf.read(io.BytesIO(b"".join(pieces)), dtype="float32")
    assert (rate, len(decoded)) == (24000, account.whole_samples)


@pytest.mark.parametrize(("change", "message"), [
    ({"response_format": "flac", "stream_format": "sse"}, "sse streams pcm, wav, mp3, opus"),
    ({"stream": False, "stream_format": "sse"}, "sse streams"),
    ({"voice": "nobody"}, "is not a speaker of your account"),
])
def test_errors_before_the_first_byte_are_problem_answers(
        account: Account, change: dict[str, object], message: str) -> None:
    response = account.http.post("/v1/audio/speech", json=_body(**change))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert message in response.text


def test_flac_is_answered_whole(account: Account) -> None:
    response = account.http.post("/v1/audio/speech", json=_body(response_format="flac"))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    decoded, _ = sf.read(io.BytesIO(response.content), dtype="float32")
    assert len(decoded) == account.whole_samples
