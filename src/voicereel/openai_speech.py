"""OpenAI-compatible speech: `POST /v1/audio/speech` and `GET /v1/models`.

An OpenAI client pointed at VoiceReel (`OpenAI(base_url=".../v1", api_key=<VoiceReel key>)`)
gets one line rendered synchronously, through the same steps as a job's line: normalisation,
the configured engine, resampling, and the same loudness target and true-peak ceiling.

Differences from OpenAI, on purpose:
- `voice` is one of the account's speakers, by id or by name (case-insensitive); OpenAI's stock
  voice names (alloy, nova, ...) are not speakers here and are refused with a 422 listing the
  account's speakers.
- `model` may be any of OpenAI's TTS model names or an engine name; all render with the
  configured engine.
- `speed` accepts OpenAI's 0.25-4.0 but the engines render 0.5-2.0, so it is clamped to that.
- `response_format` `aac` is refused (422); `opus` is Ogg Opus; `pcm` is raw 16-bit
  little-endian mono, like every format here at 24 kHz. `stream_format` `sse` is refused.
- `instructions` is accepted and ignored (no engine here takes style prompts).
- Pause markup (`[pause:1s]`) in `input` works as in scripts.

While it renders, a request holds one of the API key's concurrent-job slots (as a running,
hidden job row); when done, that row is metered as a finished job, so `GET /v1/usage` counts it.
Its audio is limited by `max_speech_audio_seconds`: estimated before rendering, counted while
rendering.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from voicereel.audio.encode import CONTENT_TYPES
from voicereel.audio.encode import encode as encode_audio
from voicereel.audio.mix import level_master
from voicereel.auth.ratelimit import check_job_slots
from voicereel.db import repo
from voicereel.db.tables import ApiKey, Speaker, Tenant, utcnow
from voicereel.domain.markup import strip_markup
from voicereel.domain.script import (
    SPEECH_AUDIO_SETTING,
    AudioBudget,
    OutputOptions,
    ScriptLine,
    SynthesisRequest,
    text_seconds_bound,
)
from voicereel.engines.registry import ENGINE_NAMES
from voicereel.errors import AudioTooLong, NotFound, ValidationFailed, VoiceReelError
from voicereel.jobs.pipeline import JobPlan, render_line, voice_for
from voicereel.services import Services

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
    stream_format: Literal["audio", "sse"] | None = None


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


def create_speech(services: Services, tenant: Tenant, api_key: ApiKey,
                  request: SpeechRequest) -> tuple[bytes, str]:
    """Render `request.input` in the chosen voice; returns the encoded audio and its type."""
    _check(services, request)
    settings = services.settings
    voice = request.voice.id if isinstance(request.voice, VoiceId) else request.voice
    with services.db.session() as session:
        speaker = _resolve_voice(session, tenant, voice.strip())
    speed = min(max(request.speed, ENGINE_MIN_SPEED), ENGINE_MAX_SPEED)
    plan = JobPlan(
        job_id="speech", tenant_id=tenant.id,
        request=SynthesisRequest(
            script=[ScriptLine(speaker_id=speaker.id, text=request.input, speed=speed)],
            output=OutputOptions(format="wav", sample_rate=SAMPLE_RATE), captions=[]),
        speakers={speaker.id: speaker}, voices={speaker.id: voice_for(services, speaker)},
        created_at=utcnow(), budget=AudioBudget.for_speech(settings))
    with services.db.session() as session:
        check_job_slots(session, settings, api_key)
        job_id = repo.start_direct_render(session, tenant.id, api_key.id,
                                          plan.request.model_dump(mode="json"),
                                          settings.max_job_seconds)
    fmt = request.response_format
    try:
        audio = _level(services, render_line(services, plan, 0).audio)
        body = encode(audio, fmt)
    except BaseException as exc:
        error = exc.detail if isinstance(exc, VoiceReelError) else \
            f"internal error while rendering ({type(exc).__name__})"
        _finish(services, job_id, request, None, error)
        raise
    _finish(services, job_id, request, len(audio) / SAMPLE_RATE, None)
    return body, MEDIA_TYPES[fmt]


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
    if request.stream_format == "sse":
        problems.append({"loc": ["body", "stream_format"],
                         "msg": "sse is not supported; the audio comes in the response body"})
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
                        settings.true_peak_dbtp).audio.astype(np.float32, copy=False)


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """Encode 24 kHz float32 mono as an OpenAI response format."""
    if fmt == "pcm":
        clipped = np.clip(audio, -1.0, 1.0)
        return bytes(np.round(clipped * 32767.0).astype("<i2").tobytes())
    if fmt == "opus":
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", samplerate=SAMPLE_RATE, channels=1, format="OGG",
                          subtype="OPUS") as out:
            # libsndfile's Ogg writers have crashed on very large single writes
            for start in range(0, len(audio), _OGG_BLOCK):
                out.write(np.clip(audio[start:start + _OGG_BLOCK], -1.0, 1.0))
        return buffer.getvalue()
    return encode_audio(audio, SAMPLE_RATE, fmt)
