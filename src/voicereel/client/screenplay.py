"""Script files: the API's JSON, or a screenplay written by hand.

A screenplay has one turn per line, the speaker's name, a colon, then what they say:

    Alice: Hello there.
    Bob: Hi! [pause:500ms] How are you?

    [pause:1.5s]
    Alice: Fine, thanks.

Blank lines are ignored. `[pause:1.5s]` / `[pause:300ms]` may stand inside a line (the server
renders it there) or on a line of its own, which lengthens the pause after the previous turn
(or, before the first turn, opens the track with silence). Names are matched to the account's
speakers case-insensitively; a speaker id (`spk_...`) may stand in place of a name. This module
does no I/O: it parses text and matches names against a given list of speakers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

_TURN_RE = re.compile(r"(?P<name>[^:\[\]]+?)\s*:\s*(?P<text>.*)")
_PAUSE_LINE_RE = re.compile(r"\[\s*pause\b[^\]]*\]", re.IGNORECASE)
_PAUSE_VALUE_RE = re.compile(
    r"\[\s*pause\s*:\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s)\s*\]", re.IGNORECASE)
MAX_CANDIDATES_SHOWN = 20


class ScriptError(ValueError):
    """A script file that cannot be used; `problems` holds one message per problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Turn:
    """One screenplay line: who speaks, what they say, and any pause written after it."""

    speaker: str
    text: str
    line_number: int
    pause_after_ms: int | None = None


@dataclass
class ParsedScript:
    """A script file's content: either the API's JSON body or screenplay turns."""

    body: dict[str, Any] | None = None
    turns: list[Turn] = field(default_factory=list)

    @property
    def is_json(self) -> bool:
        return self.body is not None


def parse_script(text: str, filename: str = "") -> ParsedScript:
    """Read a script file's text; JSON when named `*.json` or when it parses as a JSON object
    or list, a screenplay otherwise."""
    text = text.lstrip("\ufeff")
    stripped = text.strip()
    if filename.lower().endswith(".json") or stripped.startswith("{"):
        return ParsedScript(body=_json_body(stripped))
    if stripped.startswith("["):
        try:
            return ParsedScript(body=_json_body(stripped))
        except ScriptError:
            pass  # a screenplay may well open with a [pause:...] line
    return ParsedScript(turns=parse_screenplay(text))


def _json_body(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ScriptError([f"the JSON is not valid: {exc}"]) from exc
    if isinstance(value, list):
        value = {"script": value}
    if not isinstance(value, dict) or not isinstance(value.get("script"), list):
        raise ScriptError(['a JSON script is {"script": [{"speaker_id": ..., "text": ...}, ...]}'
                           " or just that list"])
    return value


def parse_screenplay(text: str) -> list[Turn]:
    """The turns of a screenplay; raises `ScriptError` naming every bad line."""
    turns: list[Turn] = []
    problems: list[str] = []
    leading_pause_ms = 0
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if _PAUSE_LINE_RE.fullmatch(line):
            ms = _pause_ms(line)
            if ms is None:
                problems.append(f"line {number}: write a pause as [pause:1.5s] or "
                                f"[pause:300ms], not {line!r}")
            elif turns:
                turns[-1].pause_after_ms = (turns[-1].pause_after_ms or 0) + ms
            else:
                leading_pause_ms += ms
            continue
        match = _TURN_RE.fullmatch(line)
        if match is None:
            problems.append(f"line {number}: expected 'Speaker: what they say', got {line!r}")
            continue
        name, spoken = " ".join(match["name"].split()), match["text"].strip()
        if not spoken:
            problems.append(f"line {number}: {name} says nothing")
            continue
        if not turns and leading_pause_ms:
            spoken = f"[pause:{leading_pause_ms}ms] {spoken}"
            leading_pause_ms = 0
        turns.append(Turn(name, spoken, number))
    if not turns and not problems:
        problems.append("the screenplay holds no turns; write lines like 'Alice: Hello there.'")
    if problems:
        raise ScriptError(problems)
    return turns


def _pause_ms(marker: str) -> int | None:
    match = _PAUSE_VALUE_RE.fullmatch(marker)
    if match is None:
        return None
    scale = 1 if match["unit"].lower() == "ms" else 1000
    return round(float(match["value"]) * scale)


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def resolve_speakers(turns: list[Turn],
                     speakers: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """The API script for `turns`, given the account's speakers as `(id, name)` pairs.

    Raises `ScriptError` listing every unknown or ambiguous name with the candidates.
    """
    known = list(speakers)
    known_ids = {speaker_id for speaker_id, _ in known}
    by_name: dict[str, list[tuple[str, str]]] = {}
    for speaker_id, name in known:
        by_name.setdefault(_key(name), []).append((speaker_id, name))
    resolved: dict[str, str] = {}
    unresolved: set[str] = set()
    problems: list[str] = []
    for turn in turns:
        if turn.speaker in resolved or turn.speaker in unresolved:
            continue
        if turn.speaker in known_ids:
            resolved[turn.speaker] = turn.speaker
            continue
        matches = by_name.get(_key(turn.speaker), [])
        if len(matches) == 1:
            resolved[turn.speaker] = matches[0][0]
            continue
        unresolved.add(turn.speaker)
        if matches:
            ids = ", ".join(f"{sid} ({name})" for sid, name in matches)
            problems.append(f"line {turn.line_number}: {turn.speaker!r} names "
                            f"{len(matches)} speakers: {ids}; write the speaker id instead")
        else:
            problems.append(f"line {turn.line_number}: no speaker named {turn.speaker!r}; "
                            f"{_candidates(known)}")
    if problems:
        raise ScriptError(problems)
    script: list[dict[str, Any]] = []
    for turn in turns:
        line: dict[str, Any] = {"speaker_id": resolved[turn.speaker], "text": turn.text}
        if turn.pause_after_ms is not None:
            line["pause_after_ms"] = turn.pause_after_ms
        script.append(line)
    return script


def _candidates(speakers: list[tuple[str, str]]) -> str:
    if not speakers:
        return "this account has no speakers yet (add one with `voicereel speakers add`)"
    names = sorted({name for _, name in speakers}, key=str.casefold)
    shown = ", ".join(names[:MAX_CANDIDATES_SHOWN])
    more = f" and {len(names) - MAX_CANDIDATES_SHOWN} more" if len(names) > MAX_CANDIDATES_SHOWN \
        else ""
    return f"known speakers: {shown}{more}"


_LINE_FIELDS = ("speaker_id", "text", "speed", "pause_after_ms")


def script_edits(current: list[dict[str, Any]], edited: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """The revision edits that turn a job's `current` script into `edited` (both in the API's
    JSON form): unchanged lines are left out, so a revision renders only what changed.

    Lines are matched by speaker and text; a changed line in place of another becomes an edit
    of it, extra ones insertions or deletions.
    """

    def key(line: dict[str, Any]) -> tuple[str, str]:
        return line["speaker_id"], line["text"]

    def value(line: dict[str, Any], name: str) -> Any:
        return line.get(name, 1.0 if name == "speed" else None)  # the API's defaults

    def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        return {name: value(new, name) for name in _LINE_FIELDS
                if value(new, name) != value(old, name)}

    edits: list[dict[str, Any]] = []
    matcher = SequenceMatcher(a=[key(line) for line in current],
                              b=[key(line) for line in edited], autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        paired = min(a1 - a0, b1 - b0) if op == "replace" else (a1 - a0 if op == "equal" else 0)
        for k in range(paired):
            if fields := changes(current[a0 + k], edited[b0 + k]):
                edits.append({"line": a0 + k, **fields})
        edits += [{"delete": index} for index in range(a0 + paired, a1)]
        after = a0 + paired - 1
        edits += [{"insert_after": after, **{name: edited[index][name] for name in _LINE_FIELDS
                                            if name in edited[index]}}
                  for index in range(b0 + paired, b1)]
    return edits
