"""Revision edits: how a finished job's script changes, and which lines keep their units.

Edits address the lines of the revision they revise, by index, so their order in a request
does not matter: `{"line": 3, "text": ...}` changes a line (any of text, speaker_id, speed,
pause_after_ms, seed, lang; a null lang: the speaker's), `{"line": 2, "retake": true}`
renders it again with a new seed (or the `seed` given: the same seed renders the same take
again), `{"insert_after": 5, ...}` adds a line (-1: before the first), `{"delete": 7}`
removes one. A line keeps its stored unit unless its text, speaker, speed, seed or language
changed or a retake was asked for; a new pause after a line changes only the assembly, never
the line's audio. A new output sample rate renders every line.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voicereel.domain.captions import CaptionOptions
from voicereel.domain.languages import canonical_tag
from voicereel.domain.script import (
    SEED_MAX,
    OutputOptions,
    ScriptLine,
    SynthesisRequest,
)
from voicereel.errors import ValidationFailed


class LineEdit(BaseModel):
    """Change line `line`, or (with `retake`) render it again as it is."""

    model_config = ConfigDict(extra="forbid")

    line: int = Field(ge=0)
    text: str | None = Field(None, min_length=1)
    speaker_id: str | None = Field(None, min_length=1, max_length=40)
    speed: float | None = Field(None, ge=0.5, le=2.0)
    pause_after_ms: int | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    lang: str | None = Field(None, max_length=35)
    retake: bool = False

    @field_validator("lang")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return None if value is None else canonical_tag(value)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text must not be blank")
        return value


class InsertLine(ScriptLine):
    """A new line after line `insert_after` (-1: before the first line)."""

    insert_after: int = Field(ge=-1)


class DeleteLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delete: int = Field(ge=0)


Edit = LineEdit | InsertLine | DeleteLine


class RevisionRequest(BaseModel):
    """Body of `POST /v1/jobs/{id}/revisions`; output and captions default to the revised
    revision's."""

    model_config = ConfigDict(extra="forbid")

    edits: list[Edit] = Field(default_factory=list)
    output: OutputOptions | None = None
    captions: CaptionOptions | None = None
    lexicons: list[str] | None = Field(None, max_length=3, description=(
        "the revision's lexicons (replacing the job's); only the lines whose spoken words "
        "they change render again"))

    @model_validator(mode="after")
    def _changes_something(self) -> RevisionRequest:
        if not self.edits and self.lexicons is None:
            raise ValueError("a revision needs edits or lexicons")
        return self


@dataclass(frozen=True)
class RevisedScript:
    """The new revision's request, and for each of its lines the line of the revised
    revision whose unit it reuses (None: the line renders)."""

    request: SynthesisRequest
    reused_from: list[int | None]

    @property
    def to_render(self) -> list[int]:
        return [i for i, source in enumerate(self.reused_from) if source is None]


def changed_fields(edit: LineEdit) -> dict[str, object]:
    """The fields of a line an edit sets (a null pause_after_ms: the default pause; a null
    lang: the speaker's)."""
    return {name: value for name, value in edit.model_dump(exclude_unset=True).items()
            if name not in ("line", "retake") and (value is not None
                                                   or name in ("pause_after_ms", "lang"))}


def apply_edits(previous: SynthesisRequest, revision: RevisionRequest) -> RevisedScript:
    """The script `revision` makes of `previous`; ValidationFailed listing every bad edit."""
    count = len(previous.script)
    errors: list[dict[str, object]] = []
    changes: dict[int, LineEdit] = {}
    deleted: set[int] = set()
    inserted: dict[int, list[ScriptLine]] = {}
    for number, edit in enumerate(revision.edits):
        loc = ["body", "edits", number]
        target = (edit.line if isinstance(edit, LineEdit) else
                  edit.delete if isinstance(edit, DeleteLine) else edit.insert_after)
        if target >= count:
            errors.append({"loc": loc, "msg": f"line {target} does not exist; the script has "
                                              f"lines 0 to {count - 1}"})
            continue
        if isinstance(edit, InsertLine):
            inserted.setdefault(edit.insert_after, []).append(
                ScriptLine.model_validate(edit.model_dump(exclude={"insert_after"})))
            continue
        if target in changes or target in deleted:
            errors.append({"loc": loc, "msg": f"line {target} has more than one edit"})
            continue
        if isinstance(edit, DeleteLine):
            deleted.add(target)
        elif not edit.retake and not changed_fields(edit):
            errors.append({"loc": loc, "msg": "an edit changes text, speaker_id, speed, "
                                              "pause_after_ms, seed or lang, or asks for a "
                                              "retake"})
        else:
            changes[target] = edit
    if errors:
        raise ValidationFailed("the edits do not fit the job's script", errors=errors)

    lines: list[ScriptLine] = []
    reused_from: list[int | None] = []

    def add_inserted(after: int) -> None:
        for line in inserted.get(after, []):
            lines.append(line)
            reused_from.append(None)

    add_inserted(-1)
    for index, line in enumerate(previous.script):
        if index not in deleted:
            change = changes.get(index)
            new = line
            if change is not None:
                fields = changed_fields(change)
                if change.retake:
                    fields.setdefault("seed", None)  # a new take: a new seed, unless given
                new = line.model_copy(update=fields)
            rerender = change is not None and (
                change.retake or (new.text, new.speaker_id, new.speed, new.seed, new.lang)
                != (line.text, line.speaker_id, line.speed, line.seed, line.lang))
            lines.append(new)
            reused_from.append(None if rerender else index)
        add_inserted(index)
    if not lines:
        raise ValidationFailed("the edits delete every line; delete the job instead",
                               errors=[{"loc": ["body", "edits"], "msg": "no line is left"}])
    data = previous.model_dump(mode="json")
    data["script"] = [line.model_dump(mode="json") for line in lines]
    if revision.output is not None:
        data["output"] = revision.output.model_dump(mode="json")
    if revision.captions is not None:
        data["captions"] = revision.captions.model_dump(mode="json")
    if revision.lexicons is not None:
        data["lexicons"] = list(revision.lexicons)
    request = SynthesisRequest.model_validate(data)
    if request.output.sample_rate != previous.output.sample_rate:
        reused_from = [None] * len(lines)  # units hold audio at the old rate: all render anew
    return RevisedScript(request, reused_from)
