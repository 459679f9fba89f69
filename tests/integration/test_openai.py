"""The official `openai` package gets valid audio from /v1/audio/speech on a live server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openai
import pytest
import soundfile as sf

from tests.integration.conftest import LiveServer
from voicereel.client import VoiceReel

TEXT = "Hello from VoiceReel. This is a short test sentence."


@dataclass
class Account:
    client: openai.OpenAI
    speaker_id: str
    base_url: str


@pytest.fixture(scope="module")
def account(live_server: LiveServer, reference_files: dict[str, Path]) -> Iterator[Account]:
    key = live_server.create_key()
    with VoiceReel(live_server.base_url, key) as voicereel:
        speaker = voicereel.create_speaker("Alice", reference_files["Alice"])
    client = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key=key, max_retries=0)
    yield Account(client, speaker.id, live_server.base_url)
    client.close()


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, int(rate)


def _speech(account: Account, **kw: object) -> bytes:
    params: dict[str, object] = {"model": "tts-1", "voice": "alice", "input": TEXT, **kw}
    return account.client.audio.speech.create(**params).content  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus"])
def test_each_format_decodes_to_audible_24khz_speech(account: Account, fmt: str) -> None:
    data = _speech(account, response_format=fmt)
    audio, rate = _decode(data)
    assert rate == 24000
    assert 1.0 < len(audio) / rate < 10.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.01
    if fmt == "opus":
        assert data[:4] == b"OggS" and b"OpusHead" in data[:64]


def test_pcm_is_raw_16_bit_little_endian_mono_at_24khz(account: Account) -> None:
    data = _speech(account, response_format="pcm", voice=account.speaker_id)
    assert len(data) % 2 == 0
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0
    assert 1.0 < len(pcm) / 24000 < 10.0
    assert float(np.sqrt(np.mean(pcm**2))) > 0.01
    # Read with the wrong byte order the samples would be noise with a huge level.
    assert float(np.sqrt(np.mean(pcm**2))) < 0.5


def test_the_default_format_is_mp3_and_speed_changes_the_length(account: Account) -> None:
    normal = account.client.audio.speech.create(model="gpt-4o-mini-tts", voice="ALICE",
                                                input=TEXT)
    assert normal.response.headers["content-type"] == "audio/mpeg"
    fast = _speech(account, model="piper", voice={"id": account.speaker_id},
                   response_format="wav", speed=4.0)
    slow = _speech(account, response_format="wav", speed=0.25)
    assert len(_decode(fast)[0]) < len(_decode(slow)[0]) * 0.5


def test_openai_voice_names_are_refused_with_the_speakers_listed(account: Account) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        _speech(account, voice="alloy")
    assert "your speakers: Alice" in caught.value.response.text


@pytest.mark.parametrize(("change", "message"), [
    ({"input": "a" * 4097}, "at most 4096 characters"),
    ({"response_format": "aac"}, "aac is not supported"),
    ({"speed": 5.0}, "less than or equal to 4"),
    ({"model": "whisper-1"}, "unknown model 'whisper-1'"),
])
def test_limits_and_unsupported_options_are_refused(account: Account, change: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        _speech(account, **change)
    assert message in caught.value.response.text


def test_models_are_listed_as_openai_clients_expect(account: Account) -> None:
    models = {model.id: model for model in account.client.models.list()}
    assert {"piper", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= models.keys()
    assert all(m.object == "model" and m.owned_by == "voicereel" for m in models.values())
    assert account.client.models.retrieve("tts-1").id == "tts-1"


def test_a_wrong_key_is_an_authentication_error(account: Account) -> None:
    stranger = openai.OpenAI(base_url=f"{account.base_url}/v1", api_key="vr_wrong",
                             max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.audio.speech.create(model="tts-1", voice="alice", input=TEXT)


def test_speech_renders_are_metered_as_usage(live_server: LiveServer,
                                             reference_files: dict[str, Path]) -> None:
    key = live_server.create_key()
    with VoiceReel(live_server.base_url, key) as voicereel:
        voicereel.create_speaker("Bob", reference_files["Bob"])
        client = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key=key,
                               max_retries=0)
        for _ in range(2):
            client.audio.speech.create(model="tts-1", voice="bob", input=TEXT,
                                       response_format="wav")
        client.close()
        usage = voicereel.usage()
    assert usage.totals.jobs == 2
    assert usage.totals.characters == 2 * len(TEXT)
    assert usage.totals.audio_seconds > 2.0
