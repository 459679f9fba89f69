"""The synthesis request: a script of speaker turns plus output options, and its limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from voicereel.domain.markup import split_pauses, strip_markup
from voicereel.errors import ValidationFailed
from voicereel.settings import Settings

AudioFormat = Literal["wav", "mp3", "flac", "ogg"]
CaptionFormat = Literal["vtt", "srt", "json"]
ALL_CAPTIONS: tuple[CaptionFormat, ...] = ("vtt", "srt", "json")


class ScriptLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker_id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1)
    pause_after_ms: int | None = Field(None, ge=0)
    speed: float = Field(1.0, ge=0.5, le=2.0)

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
    captions: list[CaptionFormat] = Field(default_factory=lambda: list(ALL_CAPTIONS))
    # POSTed the finished job, signed (docs/security.md)
    callback_url: HttpUrl | None = None

    @field_validator("captions")
    @classmethod
    def _unique(cls, value: list[CaptionFormat]) -> list[CaptionFormat]:
        return list(dict.fromkeys(value))


def check_limits(request: SynthesisRequest, settings: Settings) -> None:
    """Apply the configured limits; raise one ValidationFailed listing every problem."""
    errors: list[dict[str, object]] = []
    if len(request.script) > settings.max_script_lines:
        errors.append({"loc": ["body", "script"],
                       "msg": f"at most {settings.max_script_lines} lines are allowed"})
    total = 0
    for i, line in enumerate(request.script):
        total += len(line.text)
        if len(line.text) > settings.max_line_chars:
            errors.append({"loc": ["body", "script", i, "text"],
                           "msg": f"at most {settings.max_line_chars} characters per line"})
        try:
            split_pauses(line.text, settings.max_pause_ms)
        except ValidationFailed as exc:
            errors.append({"loc": ["body", "script", i, "text"], "msg": exc.detail})
        if not strip_markup(line.text).strip():
            errors.append({"loc": ["body", "script", i, "text"],
                           "msg": "a line needs words, not only pause markers"})
        if line.pause_after_ms is not None and line.pause_after_ms > settings.max_pause_ms:
            errors.append({"loc": ["body", "script", i, "pause_after_ms"],
                           "msg": f"at most {settings.max_pause_ms} ms"})
    if total > settings.max_script_chars:
        errors.append({"loc": ["body", "script"],
                       "msg": f"at most {settings.max_script_chars} characters in all"})
    if errors:
        raise ValidationFailed("the script exceeds the service limits", errors=errors)


def units_total(request: SynthesisRequest) -> int:
    """Steps of a job's progress: every line, then assembly and upload."""
    return len(request.script) + 1


def script_characters(request: SynthesisRequest) -> int:
    return sum(len(line.text) for line in request.script)
