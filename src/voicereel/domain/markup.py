"""Inline pause markup in script text: `Hello [pause:1.5s] there` or `[pause: 300ms]`.

Markers are case-insensitive and may hold spaces inside the brackets. `split_pauses` cuts a line
into pieces to synthesise one by one, each followed by its silence. A line that starts with a
marker yields a first piece with empty text, so the silence comes before any speech; markers
next to each other add up into one pause, which must itself stay within the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voicereel.errors import ValidationFailed

# Anything that opens like a marker is one, so a typo fails at submit time instead of being
# read aloud as "pause colon two s".
_MARKER_RE = re.compile(r"\[\s*pause\b[^\]\[]*(?:\]|(?=\[)|$)", re.IGNORECASE)
_MARKER_PARTS_RE = re.compile(
    r"\[\s*pause\s*:\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s)\s*\]", re.IGNORECASE)


@dataclass(frozen=True)
class Piece:
    """Text to speak, then `pause_after_ms` of silence."""

    text: str
    pause_after_ms: int


def _pause_ms(marker: str, max_pause_ms: int) -> int:
    m = _MARKER_PARTS_RE.fullmatch(marker)
    if m is None:
        raise ValidationFailed(
            f"malformed pause marker {marker!r}: write [pause:1.5s] or [pause:300ms]")
    ms = float(m["value"]) * (1 if m["unit"].lower() == "ms" else 1000)
    if ms > max_pause_ms:
        raise ValidationFailed(
            f"pause marker {marker!r} asks for {m['value']}{m['unit'].lower()}; "
            f"at most {max_pause_ms} ms is allowed")
    return round(ms)


def split_pauses(text: str, max_pause_ms: int) -> list[Piece]:
    """Split a line at its pause markers into pieces, each with the silence that follows it.

    Always returns at least one piece; raises `ValidationFailed` for a malformed marker or a
    pause (alone or summed with adjacent markers) longer than `max_pause_ms`."""
    pieces: list[Piece] = []
    text_start = 0
    for match in _MARKER_RE.finditer(text):
        ms = _pause_ms(match.group(), max_pause_ms)
        chunk = text[text_start:match.start()].strip()
        text_start = match.end()
        if chunk or not pieces:
            pieces.append(Piece(chunk, ms))
            continue
        total = pieces[-1].pause_after_ms + ms
        if total > max_pause_ms:
            raise ValidationFailed(
                f"adjacent pause markers add up to {total} ms; at most {max_pause_ms} ms "
                "is allowed")
        pieces[-1] = Piece(pieces[-1].text, total)
    tail = text[text_start:].strip()
    if tail or not pieces:
        pieces.append(Piece(tail, 0))
    return pieces


def strip_markup(text: str) -> str:
    """The line without its pause markers (well-formed or not), for captions and character
    counts. A marker counts as a word break; text without markers comes back unchanged."""
    if not _MARKER_RE.search(text):
        return text
    return " ".join(chunk.strip() for chunk in _MARKER_RE.split(text) if chunk.strip())
