"""OpenAI-compatible speech: `POST /v1/audio/speech` and `GET /v1/models`.

An OpenAI client pointed at VoiceReel (`OpenAI(base_url=".../v1", api_key=<VoiceReel key>)`)
gets one line rendered synchronously, through the steps of a job's line: normalisation, the
configured engine (its `stream`, whose first chunk comes quickly), resampling, and the same
loudness target and true-peak ceiling.

Differences from OpenAI, on purpose:
- `voice` is one of the account's speakers, by id or by name (case-insensitive); OpenAI's stock
  voice names (alloy, nova, ...) are not speakers here and are refused with a 422 listing the
  account's speakers.
- `model` may be any of OpenAI's TTS model names or an engine name; all render with the
  configured engine.
- `speed` accepts OpenAI's 0.25-4.0 but the engines render 0.5-2.0, so it is clamped to that.
- `response_format` `aac` is refused (422); `opus` is Ogg Opus; `pcm` is raw 16-bit
  little-endian mono, like every format here at 24 kHz.
- Streaming (`stream_format` `audio`, the default, or `sse`): `pcm`, `wav`, `mp3` and `opus`
  are sent as they render, with chunked transfer; `flac` is always answered whole, and so is
  any format with VoiceReel's `"stream": false`. A streamed WAV's sizes are 0xFFFFFFFF (not
  known yet). `sse` sends OpenAI's `speech.audio.delta` events (base64 audio of the format)
  and a final `speech.audio.done` with `usage`. A streamed answer is levelled a chunk at a time
  (each to the loudness target, under the true-peak ceiling); a whole one as one master. Both
  have the same samples count. An error before the first byte is a normal problem+json answer;
  after it, the stream ends without its last chunk (SSE: an `error` event), it is logged, and
  `voicereel_speech_streams_broken` counts it.
- `seed` (VoiceReel's): the same input, voice, speed and seed render the same audio.
- `instructions` is accepted and ignored (no engine here takes style prompts).
- Pause markup (`[pause:1s]`) in `input` works as in scripts.

While it renders, a request holds one of the API key's concurrent-job slots (as a running,
hidden job row); when done, that row is metered as a finished job, so `GET /v1/usage` counts it.
Its audio is limited by `max_speech_audio_seconds`: estimated before rendering, counted while
rendering.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from voicereel.audio.encode import CONTENT_TYPES
from voicereel.audio.encode import encode as encode_audio
from voicereel.audio.io import resample
from voicereel.audio.mix import FADE_SECONDS, concat_with_pauses, fade_edges, level_master
from voicereel.audio.stream_encode import STREAMABLE, pcm16, stream_encoder
from voicereel.auth.ratelimit import check_job_slots
from voicereel.db import repo
from voicereel.db.tables import ApiKey, Speaker, Tenant
from voicereel.domain import lexicon
from voicereel.domain.markup import split_pauses, strip_markup
from voicereel.domain.script import (
    SPEECH_AUDIO_SETTING,
    AudioBudget,
    OutputOptions,
    ScriptLine,
    SynthesisRequest,
    text_seconds_bound,
)
from voicereel.domain.textnorm import normalize
from voicereel.engines.base import Voice
from voicereel.engines.metrics import SPEECH_STREAMS_BROKEN
from voicereel.engines.registry import ENGINE_NAMES
from voicereel.errors import AudioTooLong, NotFound, ValidationFailed, VoiceReelError
from voicereel.jobs.pipeline import voice_for
from voicereel.services import Services

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # what OpenAI returns, and what `pcm` means to its clients
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_DATED_PREFIX = "gpt-4o-mini-tts-"
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # what OpenAI accepts
ENGINE_MIN_SPEED, ENGINE_MAX_SPEED = 0.5, 2.0  # what the engines render (ScriptLine.speed)
MODELS_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z: when these model ids were first offered
MAX_VOICES_LISTED = 20

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SUPPORTED_FORMATS = ("mp3", "opus", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": CONTENT_TYPES["mp3"], "opus": "audio/ogg", "flac": CONTENT_TYPES["flac"],
               "wav": CONTENT_TYPES["wav"], "pcm": "audio/pcm"}
_OGG_BLOCK = 1 << 16
# A streamed chunk is levelled on its own: shorter ones are held until this much has rendered
# (the loudness of a few syllables is not the loudness of speech).
MIN_STREAM_CHUNK_SECONDS = 0.4
_FADE = round(FADE_SECONDS * SAMPLE_RATE)
SSE_MEDIA_TYPE = "text/event-stream"


class VoiceId(BaseModel):
    """OpenAI's object form of a voice: `{"id": "..."}`."""

    id: str = Field(min_length=1, max_length=200)


class SpeechRequest(BaseModel):
    """Body of `POST /v1/audio/speech`, field for field as OpenAI's."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=100)
    input: str = Field(min_length=1, description="the text; at most 4096 characters by default")
    voice: str | VoiceId = Field(description="a speaker id or name of your account")
    response_format: ResponseFormat = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED,
                         description="0.25-4.0, clamped to the engines' 0.5-2.0")
    instructions: str | None = Field(None, max_length=4096, description="accepted, ignored")
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="audio (the default): the audio as it renders; sse: OpenAI's events")
    stream: bool = Field(True, description="VoiceReel: false answers the whole file at once "
                                           "(flac always is)")
    seed: int | None = Field(None, ge=0, le=2**31 - 1,
                             description="VoiceReel: the same seed renders the same audio")


def model_ids(services: Services) -> list[str]:
    """The model ids `GET /v1/models` lists: the configured engine first, then OpenAI's."""
    return [services.engine.name, *OPENAI_MODELS]


def list_models(services: Services) -> dict[str, Any]:
    return {"object": "list", "data": [_model(model_id) for model_id in model_ids(services)]}


def get_model(services: Services, model_id: str) -> dict[str, Any]:
    if model_id not in model_ids(services):
        raise NotFound(f"no model {model_id!r}; models: {', '.join(model_ids(services))}")
    return _model(model_id)


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODELS_CREATED, "owned_by": "voicereel"}


class SpeechStreamBroken(Exception):
    """A streamed answer failed after its first byte: the server ends it without its last
    chunk, so that the client sees a broken transfer rather than a short file."""


@dataclass
class Speech:
    """An answer of `create_speech`: `body` whole, or `chunks` to send as they come."""

    media_type: str
    body: bytes = b""
    chunks: Iterator[bytes] | None = None


def create_speech(services: Services, tenant: Tenant, api_key: ApiKey,
                  request: SpeechRequest) -> Speech:
    """Render `request.input` in the chosen voice, whole or as a stream (see the module
    docstring). A streamed answer's first chunk is rendered here, so that any error before
    it is raised here too; the key's slot is held until the last chunk (or a disconnect)."""
    _check(services, request)
    settings = services.settings
    voice = request.voice.id if isinstance(request.voice, VoiceId) else request.voice
    with services.db.session() as session:
        speaker = _resolve_voice(session, tenant, voice.strip())
    speed = min(max(request.speed, ENGINE_MIN_SPEED), ENGINE_MAX_SPEED)
    synthesis = SynthesisRequest(
        script=[ScriptLine(speaker_id=speaker.id, text=request.input, speed=speed)],
        output=OutputOptions(format="wav", sample_rate=SAMPLE_RATE), captions=[])
    render = _Render(services, voice_for(services, speaker), request.input, speed,
                     request.seed, AudioBudget.for_speech(settings))
    with services.db.session() as session:
        check_job_slots(session, settings, api_key)
        job_id = repo.start_direct_render(session, tenant.id, api_key.id,
                                          synthesis.model_dump(mode="json"),
                                          settings.max_job_seconds)
    fmt = request.response_format
    if not streams(request):
        try:
            audio = render.whole()
            body = encode(audio, fmt)
        except BaseException as exc:
            _finish(services, job_id, request, None, _error_text(exc))
            raise
        _finish(services, job_id, request, len(audio) / SAMPLE_RATE, None)
        return Speech(MEDIA_TYPES[fmt], body=body)
    sse = request.stream_format == "sse"
    chunks = _streamed(services, job_id, request, render, sse)
    try:
        first = next(chunks)  # _streamed has freed the slot when this raises
    except StopIteration:
        first = b""
    return Speech(SSE_MEDIA_TYPE if sse else MEDIA_TYPES[fmt], chunks=_prepend(first, chunks))


def streams(request: SpeechRequest) -> bool:
    """Whether the answer is streamed: asked for (the default) and the format can be."""
    return request.stream and request.response_format in STREAMABLE


def _prepend(first: bytes, rest: Generator[bytes, None, None]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        rest.close()


def _streamed(services: Services, job_id: str, request: SpeechRequest, render: _Render,
              sse: bool) -> Generator[bytes, None, None]:
    """The encoded stream (or its SSE events); billing and the slot as the whole answer's."""
    encoder = stream_encoder(request.response_format, SAMPLE_RATE)
    samples = 0
    sent = False

    def out(data: bytes) -> bytes:
        if not sse or not data:
            return data
        return _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})

    try:
        for audio in render.stream():
            samples += len(audio)
            data = out(encoder.feed(audio))
            if data:
                sent = True
                yield data
        data = out(encoder.finish())
        if data:
            yield data
    except GeneratorExit:
        _finish(services, job_id, request, None, "the client closed the stream")
        raise
    except BaseException as exc:
        error = _error_text(exc)
        _finish(services, job_id, request, None, error)
        if not sent:
            raise  # before the first byte: an ordinary error answer
        SPEECH_STREAMS_BROKEN.inc()
        log.error("speech stream of %s broke after its first byte: %s", job_id, error,
                  exc_info=not isinstance(exc, VoiceReelError))
        if sse:
            yield _event({"type": "error", "error": {"message": error}})
            return
        # not a VoiceReelError: those have a problem+json handler, and the answer has begun
        raise SpeechStreamBroken(error) from exc
    seconds = samples / SAMPLE_RATE
    _finish(services, job_id, request, seconds, None)
    if sse:
        yield _event({"type": "speech.audio.done", "usage": _usage(request, seconds)})


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _usage(request: SpeechRequest, seconds: float) -> dict[str, Any]:
    """OpenAI's usage fields (VoiceReel meters characters, counted here as input tokens) and
    what VoiceReel bills: the characters and the seconds of audio."""
    characters = len(request.input)
    return {"input_tokens": characters, "output_tokens": 0, "total_tokens": characters,
            "characters": characters, "audio_seconds": round(seconds, 3)}


def _error_text(exc: BaseException) -> str:
    return exc.detail if isinstance(exc, VoiceReelError) else \
        f"internal error while rendering ({type(exc).__name__})"


@dataclass
class _Piece:
    """What the engine made of one pause-delimited piece: its chunks, then its pause."""

    chunks: Iterator[tuple[np.ndarray, int]]
    pause: int  # samples at SAMPLE_RATE


class _Render:
    """One speech render: the engine's chunks per piece, then whole or streamed processing.

    Both ways resample each piece to 24 kHz, fade its edges and add its pause exactly as a
    job's line does, so both have the same number of samples; the whole answer is levelled as
    one master, a stream chunk by chunk.
    """

    def __init__(self, services: Services, voice: Voice, text: str, speed: float,
                 seed: int | None, budget: AudioBudget) -> None:
        self.services, self.voice, self.text = services, voice, text
        self.speed, self.seed, self.budget = speed, seed, budget

    def pieces(self) -> Iterator[_Piece]:
        services = self.services
        lang = self.voice.lang  # a speech line has no language of its own
        engine = services.engine_for(lang)
        for piece in split_pauses(self.text, services.settings.max_pause_ms):
            pause = round(SAMPLE_RATE * piece.pause_after_ms / 1000)
            chunks: Iterator[tuple[np.ndarray, int]] = iter(())
            if piece.text.strip():
                norm = lexicon.apply(normalize(piece.text, lang), [], lang,
                                     engine.takes_phonemes)
                chunks = self._spent(engine.stream(norm.spoken_text, self.voice,
                                                   speed=self.speed, seed=self.seed))
            yield _Piece(chunks, pause)
            self.budget.spend(pause / SAMPLE_RATE)

    def _spent(self, chunks: Iterator[Any]) -> Iterator[tuple[np.ndarray, int]]:
        for chunk in chunks:
            self.budget.spend(len(chunk.audio) / chunk.sample_rate)
            yield chunk.audio, chunk.sample_rate

    def whole(self) -> np.ndarray:
        """The whole answer at 24 kHz, levelled as a job's master."""
        clips: list[np.ndarray] = []
        pauses: list[int] = []
        for piece in self.pieces():
            parts = list(piece.chunks)
            clip = np.zeros(0, np.float32)
            if parts:
                rate = parts[0][1]
                clip = fade_edges(resample(np.concatenate([a for a, _ in parts]), rate,
                                           SAMPLE_RATE), SAMPLE_RATE)
            clips.append(clip)
            pauses.append(piece.pause)
        audio, _ = concat_with_pauses(clips, pauses)
        return _level(self.services, audio)

    def stream(self) -> Iterator[np.ndarray]:
        """The answer at 24 kHz as it renders, each chunk levelled on its own."""
        for piece in self.pieces():
            pending = np.zeros(0, np.float32)  # resampled, not levelled yet
            tail = np.zeros(0, np.float32)  # levelled, held back: it fades out if it is last
            taken = given = 0  # engine samples in, 24 kHz samples out, of this piece
            started = False
            for audio, rate in piece.chunks:
                taken += len(audio)
                part = _fit(resample(audio, rate, SAMPLE_RATE),
                            round(taken * SAMPLE_RATE / rate) - given)
                given += len(part)
                pending = np.concatenate([pending, part])
                if len(pending) < MIN_STREAM_CHUNK_SECONDS * SAMPLE_RATE:
                    continue
                levelled = _level(self.services, pending)
                pending = np.zeros(0, np.float32)
                if not started:
                    levelled[:_FADE] *= np.linspace(0.0, 1.0, _FADE, dtype=np.float32)
                    started = True
                out = np.concatenate([tail, levelled])
                tail = out[-_FADE:]
                yield out[:-_FADE]
            if len(pending):
                levelled = _level(self.services, pending)
                if not started:  # the whole piece is this one chunk
                    levelled = fade_edges(levelled, SAMPLE_RATE)
                tail = np.concatenate([tail, levelled])
            if started and len(tail):
                fade = min(len(tail), _FADE)
                tail[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
            if len(tail):
                yield tail
            if piece.pause:
                yield np.zeros(piece.pause, np.float32)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """`audio` cut or zero-padded to `length` (resampling pieces rounds each one)."""
    if len(audio) >= length:
        return audio[:max(length, 0)]
    return np.concatenate([audio, np.zeros(length - len(audio), np.float32)])


def _finish(services: Services, job_id: str, request: SpeechRequest,
            audio_seconds: float | None, error: str | None) -> None:
    """Free the key's slot; a render that succeeded is billed like a job."""
    with services.db.session() as session:
        repo.finish_direct_render(session, job_id, characters=len(request.input),
                                  audio_seconds=audio_seconds, engine=services.engine.name,
                                  error=error)


def _check(services: Services, request: SpeechRequest) -> None:
    problems: list[dict[str, Any]] = []
    audio_problem: ValidationFailed | None = None
    limit = services.settings.openai_max_input_chars
    if len(request.input) > limit:
        problems.append({"loc": ["body", "input"],
                         "msg": f"at most {limit} characters (got {len(request.input)})"})
    elif not strip_markup(request.input).strip():
        problems.append({"loc": ["body", "input"], "msg": "input needs words to speak"})
    else:
        audio_problem = _audio_problem(services, request.input)
        if audio_problem is not None:
            problems.append({"loc": ["body", "input"], "msg": audio_problem.detail})
    if not _known_model(request.model):
        accepted = ", ".join([*OPENAI_MODELS, f"{OPENAI_DATED_PREFIX}<date>", *ENGINE_NAMES])
        problems.append({"loc": ["body", "model"],
                         "msg": f"unknown model {request.model!r}; accepted: {accepted}"})
    if request.response_format not in SUPPORTED_FORMATS:
        problems.append({"loc": ["body", "response_format"],
                         "msg": f"{request.response_format} is not supported; choose "
                                f"{', '.join(SUPPORTED_FORMATS)}"})
    if request.stream_format == "sse" and not streams(request):
        problems.append({"loc": ["body", "stream_format"],
                         "msg": f"sse streams {', '.join(STREAMABLE)} only, and not with "
                                "\"stream\": false"})
    if problems:
        if len(problems) == 1 and isinstance(audio_problem, AudioTooLong):
            raise audio_problem
        raise ValidationFailed("the speech request is not valid; see errors", errors=problems)


def _audio_problem(services: Services, text: str) -> ValidationFailed | None:
    """Malformed pause markup, or more audio than one answer may hold (estimated as for jobs:
    speech at the slowest pace plus every pause)."""
    settings = services.settings
    try:
        seconds = text_seconds_bound(text, settings.max_pause_ms)
    except ValidationFailed as exc:
        return exc
    if seconds <= settings.max_speech_audio_seconds:
        return None
    detail = (f"the input may render up to {seconds:.0f} s of audio (speech at the slowest pace "
              f"plus every pause); {SPEECH_AUDIO_SETTING} allows "
              f"{settings.max_speech_audio_seconds:g} s")
    return AudioTooLong(detail, errors=[{"loc": ["body", "input"], "msg": detail}])


def _known_model(model: str) -> bool:
    return model in OPENAI_MODELS or model in ENGINE_NAMES \
        or model.startswith(OPENAI_DATED_PREFIX)


def _resolve_voice(session: Any, tenant: Tenant, voice: str) -> Speaker:
    """The speaker with this id, else the one speaker with this name (case-insensitive)."""
    speakers = repo.speaker_names(session, tenant.id)
    if any(speaker_id == voice for speaker_id, _ in speakers):
        return repo.get_speaker(session, tenant.id, voice)
    wanted = " ".join(voice.split()).casefold()
    matches = [(sid, name) for sid, name in speakers
               if " ".join(name.split()).casefold() == wanted]
    if len(matches) == 1:
        return repo.get_speaker(session, tenant.id, matches[0][0])
    if matches:
        ids = ", ".join(f"{sid} ({name})" for sid, name in matches)
        raise ValidationFailed(f"voice {voice!r} names {len(matches)} speakers; use an id", errors=[
            {"loc": ["body", "voice"], "msg": f"matching speakers: {ids}"}])
    if speakers:
        names = sorted({name for _, name in speakers}, key=str.casefold)
        more = len(names) - MAX_VOICES_LISTED
        known = ", ".join(names[:MAX_VOICES_LISTED]) + (f" and {more} more" if more > 0 else "")
        hint = f"your speakers: {known}"
    else:
        hint = "your account has no speakers yet; register one with POST /v1/speakers"
    raise ValidationFailed(
        f"voice {voice!r} is not a speaker of your account (voices are your registered "
        "speakers, by id or name)", errors=[{"loc": ["body", "voice"], "msg": hint}])


def _level(services: Services, audio: np.ndarray) -> np.ndarray:
    """The same loudness target and true-peak ceiling as a job's master."""
    settings = services.settings
    return level_master([audio], [0], SAMPLE_RATE, settings.loudness_lufs,
                        settings.true_peak_dbtp).whole()


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """Encode 24 kHz float32 mono as an OpenAI response format."""
    if fmt == "pcm":
        return pcm16(audio)
    if fmt == "opus":
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", samplerate=SAMPLE_RATE, channels=1, format="OGG",
                          subtype="OPUS") as out:
            # libsndfile's Ogg writers have crashed on very large single writes
            for start in range(0, len(audio), _OGG_BLOCK):
                out.write(np.clip(audio[start:start + _OGG_BLOCK], -1.0, 1.0))
        return buffer.getvalue()
    return encode_audio(audio, SAMPLE_RATE, fmt)
