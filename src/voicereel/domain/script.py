"""The synthesis request: a script of speaker turns plus output options, and its limits."""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from voicereel.domain.captions import CaptionOptions
from voicereel.domain.languages import canonical_tag
from voicereel.domain.markup import split_pauses, strip_markup
from voicereel.domain.textnorm import normalize
from voicereel.errors import AudioTooLong, ValidationFailed
from voicereel.settings import Settings

AudioFormat = Literal["wav", "mp3", "flac", "ogg"]
SEED_MAX = 2**31 - 1  # as fish-speech's


class ScriptLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker_id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1)
    pause_after_ms: int | None = Field(None, ge=0)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description=(
        "renders the line the same way again (on engines that honour seeds); unset: the "
        "engine picks one, shown in the job's revisions"))
    lang: str | None = Field(None, max_length=35, description=(
        "BCP 47 tag of the line's language (default: its speaker's), e.g. an English line in "
        "a Korean script"))

    @field_validator("lang")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return None if value is None else canonical_tag(value)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class OutputOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: AudioFormat = "wav"
    sample_rate: int = Field(24000, ge=8000, le=48000)
    loudness_lufs: float | None = Field(
        None, ge=-40, le=-5, description="integrated loudness of the master; default -16 LUFS")
    stems: bool = Field(False, description="also return one track per speaker")


class SynthesisRequest(BaseModel):
    """Body of `POST /v1/synthesize`."""

    model_config = ConfigDict(extra="forbid")

    script: list[ScriptLine] = Field(min_length=1)
    output: OutputOptions = Field(default_factory=OutputOptions)
    # a list of formats, or the formats with a style profile and options (domain/captions.py)
    captions: CaptionOptions = Field(default_factory=CaptionOptions)
    # POSTed the finished job, signed (docs/security.md)
    callback_url: HttpUrl | None = None
    lexicons: list[str] = Field(default_factory=list, max_length=3, description=(
        "ids of up to 3 pronunciation lexicons (/v1/lexicons), applied to the lines of their "
        "language after normalisation; the first listed wins"))


# Upper bounds of rendered speech at the slowest pace either engine renders (speed 0.5, or
# piper's longest length scale whatever the speaker's own rate). Measured there: about 0.12 s
# per spoken character, and 0.6 s for a lone short word with the engine's edges around it.
SECONDS_PER_CHARACTER = 0.13
SECONDS_PER_PIECE = 1.0
# Faster lines are shorter: a line at `speed` lasts at most the slowest pace's bound times
# SLOWEST_SPEED / (speed * SLOWEST_SPEAKER_RATE), a speaker's own pace being at least 0.8x.
SLOWEST_SPEED = 0.5
SLOWEST_SPEAKER_RATE = 0.8
JOB_AUDIO_SETTING = "VOICEREEL_MAX_JOB_AUDIO_SECONDS"
SPEECH_AUDIO_SETTING = "VOICEREEL_MAX_SPEECH_AUDIO_SECONDS"


def text_seconds_bound(text: str, max_pause_ms: int, speed: float = SLOWEST_SPEED) -> float:
    """At most how many seconds `text` renders to at `speed`: each piece between pause markers
    (numbers counted as spoken, e.g. `1000000` as `one million`), plus every inline pause.
    Raises ValidationFailed for malformed or too long pause markers."""
    per_character = SECONDS_PER_CHARACTER * min(
        1.0, SLOWEST_SPEED / (speed * SLOWEST_SPEAKER_RATE))
    seconds = 0.0
    for piece in split_pauses(text, max_pause_ms):
        if piece.text.strip():
            spoken = max(len(piece.text), len(normalize(piece.text).spoken_text))
            seconds += SECONDS_PER_PIECE + per_character * spoken
        seconds += piece.pause_after_ms / 1000
    return seconds


class AudioBudget:
    """The seconds of audio one job or speech request may render, counted as its lines render
    (from any thread): the net under the estimate checked at submission, which an engine
    rendering far slower than expected could pass."""

    def __init__(self, limit_seconds: float, setting: str) -> None:
        self.limit_seconds = limit_seconds
        self.setting = setting
        self.spent_seconds = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_job(cls, settings: Settings) -> AudioBudget:
        return cls(settings.max_job_audio_seconds, JOB_AUDIO_SETTING)

    @classmethod
    def for_speech(cls, settings: Settings) -> AudioBudget:
        return cls(settings.max_speech_audio_seconds, SPEECH_AUDIO_SETTING)

    def spend(self, seconds: float) -> None:
        """Count rendered audio; AudioTooLong once the total passes the limit."""
        with self._lock:
            self.spent_seconds += seconds
            spent = self.spent_seconds
        if spent > self.limit_seconds:
            raise AudioTooLong(f"the rendered audio passed {self.limit_seconds:g} s, the limit "
                               f"of {self.setting}")


def check_limits(request: SynthesisRequest, settings: Settings) -> None:
    """Apply the configured limits; raise one ValidationFailed listing every problem (an
    AudioTooLong when the estimated duration is the only one)."""
    errors: list[dict[str, object]] = []
    if len(request.script) > settings.max_script_lines:
        errors.append({"loc": ["body", "script"],
                       "msg": f"at most {settings.max_script_lines} lines are allowed"})
    total = 0
    seconds = 0.0
    for i, line in enumerate(request.script):
        total += len(line.text)
        if len(line.text) > settings.max_line_chars:
            errors.append({"loc": ["body", "script", i, "text"],
                           "msg": f"at most {settings.max_line_chars} characters per line"})
        try:
            seconds += text_seconds_bound(line.text, settings.max_pause_ms, line.speed)
        except ValidationFailed as exc:
            errors.append({"loc": ["body", "script", i, "text"], "msg": exc.detail})
        if i < len(request.script) - 1:  # the track ends with the last line's audio
            seconds += (line.pause_after_ms if line.pause_after_ms is not None
                        else settings.default_pause_ms) / 1000
        if not strip_markup(line.text).strip():
            errors.append({"loc": ["body", "script", i, "text"],
                           "msg": "a line needs words, not only pause markers"})
        if line.pause_after_ms is not None and line.pause_after_ms > settings.max_pause_ms:
            errors.append({"loc": ["body", "script", i, "pause_after_ms"],
                           "msg": f"at most {settings.max_pause_ms} ms"})
    if total > settings.max_script_chars:
        errors.append({"loc": ["body", "script"],
                       "msg": f"at most {settings.max_script_chars} characters in all"})
    if seconds > settings.max_job_audio_seconds:
        detail = (f"the script may render up to {seconds:.0f} s of audio (speech at the slowest "
                  f"pace plus every pause); {JOB_AUDIO_SETTING} allows "
                  f"{settings.max_job_audio_seconds:g} s")
        if not errors:
            raise AudioTooLong(detail, errors=[{"loc": ["body", "script"], "msg": detail}])
        errors.append({"loc": ["body", "script"], "msg": detail})
    if errors:
        raise ValidationFailed("the script exceeds the service limits", errors=errors)


def line_language(line: ScriptLine, speaker_lang: str) -> str:
    """The language a line is spoken in: its own `lang`, else its speaker's."""
    return line.lang or speaker_lang


def units_total(request: SynthesisRequest) -> int:
    """Steps of a job's progress: every line, then assembly and upload."""
    return len(request.script) + 1


def line_characters(request: SynthesisRequest, lines: list[int]) -> int:
    """The characters of some of the script's lines (what rendering them is billed)."""
    return sum(len(request.script[index].text) for index in lines)
