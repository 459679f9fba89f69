"""Cue layout: the caption JSON's timed words laid out into subtitle cues by a style profile.

A cue holds one or more words of one speaker's turn (or, where the profile allows dual-speaker
cues, two short turns, each on its own line after "- "). Cues break at sentence ends, then at
clause punctuation, then before conjunctions and prepositions, never inside a word; a cue's
lines are balanced, the bottom one the longer when they differ. A cue starts with its first
word and ends with its last, then lasts longer into the following silence to reach the minimum
duration and the reading speed, never closer to the next cue than the minimum gap.

`quality_report` measures the cues against the profile and names each violation; a limit the
script makes impossible (a word wider than a line) is reported, never fixed by breaking it.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voicereel.domain.sentences import ends_clause, ends_sentence

StyleName = Literal["netflix-en", "bbc", "youtube", "korean"]
# A cue or line may break before these (the Netflix and BBC guides' "before conjunctions and
# prepositions"); lower-case English.
BREAK_BEFORE = frozenset((
    "and", "but", "or", "nor", "so", "yet", "because", "although", "though", "while",
    "whereas", "if", "unless", "until", "when", "whenever", "where", "wherever", "that",
    "which", "who", "whom", "whose", "than", "as", "since", "after", "before", "to", "of",
    "in", "on", "at", "for", "with", "from", "by", "about", "into", "onto", "over", "under",
    "between", "through", "during", "without", "within", "against", "among", "toward",
    "towards", "upon",
))
DUAL_PREFIX = "- "


class CaptionStyle(BaseModel):
    """The limits cues are laid out by; built-in profiles in `PROFILES`."""

    model_config = ConfigDict(extra="forbid")

    max_chars_per_line: int = Field(42, ge=8, le=120)  # columns when width_aware
    max_lines: int = Field(2, ge=1, le=3)
    max_cue_seconds: float = Field(7.0, ge=1.0, le=30.0)
    min_cue_seconds: float = Field(5 / 6, ge=0.0, le=5.0)
    max_chars_per_second: float = Field(17.0, ge=5.0, le=60.0)
    max_words_per_minute: float | None = Field(None, ge=60, le=600)
    min_gap_frames: int = Field(2, ge=0, le=12)
    frame_rate: float = Field(25.0, ge=10.0, le=120.0)
    dual_speaker: bool = True  # two short turns may share a cue, "- " before each
    width_aware: bool = False  # a wide (CJK, Hangul) character takes two columns

    @property
    def min_gap_seconds(self) -> float:
        return self.min_gap_frames / self.frame_rate


PROFILES: dict[str, CaptionStyle] = {
    "netflix-en": CaptionStyle(),
    "bbc": CaptionStyle(max_chars_per_line=37, max_cue_seconds=7.0, min_cue_seconds=1.0,
                        max_chars_per_second=15.0, max_words_per_minute=180.0,
                        dual_speaker=False),
    "youtube": CaptionStyle(max_chars_per_line=42, max_cue_seconds=10.0, min_cue_seconds=0.5,
                            max_chars_per_second=25.0, min_gap_frames=0, frame_rate=30.0),
    # Netflix's Korean guide: 16 full-width characters a line, 12 characters a second
    "korean": CaptionStyle(max_chars_per_line=32, max_chars_per_second=12.0,
                           width_aware=True, dual_speaker=True),
}


def columns(text: str, width_aware: bool) -> int:
    """How wide `text` is on screen: characters, or with `width_aware` half-width columns."""
    if not width_aware:
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


@dataclass
class Word:
    text: str
    start: float
    end: float


@dataclass
class Cue:
    """One subtitle: its lines, when it shows, and which words and speakers it carries."""

    start: float
    end: float
    lines: list[str]
    speakers: list[str]  # names, one per turn in the cue (two in a dual-speaker cue)
    speaker_ids: list[str]
    words: list[Word]
    segments: list[int]  # the caption JSON's segment index of each turn in the cue
    first_word: int = 0  # index of its first word within its first segment

    @property
    def text(self) -> str:
        return " ".join(line.removeprefix(DUAL_PREFIX) if len(self.speakers) > 1 else line
                        for line in self.lines)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def reading_chars(self) -> int:
        return len(self.text)

    @property
    def chars_per_second(self) -> float:
        return self.reading_chars / max(self.seconds, 1e-3)


@dataclass
class Layout:
    cues: list[Cue]
    impossible: list[dict[str, Any]] = field(default_factory=list)  # limits the text breaks


def _break_class(word: str, following: str | None) -> int:
    """How good a break after `word` is: 3 sentence end, 2 clause, 1 before a conjunction or
    preposition, 0 anywhere else."""
    if ends_sentence(word):
        return 3
    if ends_clause(word):
        return 2
    if following is not None and following.lower().strip("\"'(“‘") in BREAK_BEFORE:
        return 1
    return 0


def break_lines(words: list[str], style: CaptionStyle, prefix: str = "") -> list[str] | None:
    """The words in at most `max_lines` balanced lines of at most `max_chars_per_line`
    columns, or None when they do not fit."""
    limit, aware = style.max_chars_per_line, style.width_aware

    def width(part: list[str]) -> int:
        return columns(prefix + " ".join(part), aware)

    if width(words) <= limit:
        return [prefix + " ".join(words)]
    best: tuple[float, list[str]] | None = None
    for count in range(2, style.max_lines + 1):
        for cuts in _cut_positions(len(words), count):
            parts = [words[a:b] for a, b in zip((0, *cuts), (*cuts, len(words)), strict=True)]
            widths = [width(p) for p in parts]
            if max(widths) > limit:
                continue
            # balanced first; a top line longer than the one below costs extra (a pyramid
            # stands on its wider line); a good linguistic break saves some
            cost = float(max(widths) - min(widths))
            cost += sum(4.0 for upper, lower in zip(widths, widths[1:], strict=False)
                        if upper > lower)
            cost -= sum(3.0 * _break_class(words[cut - 1], words[cut]) for cut in cuts)
            cost += 100.0 * (count - 2)  # no more lines than needed
            if best is None or cost < best[0]:
                best = (cost, [prefix + " ".join(p) for p in parts])
        if best is not None:
            return best[1]
    return None


def _cut_positions(n: int, parts: int) -> list[tuple[int, ...]]:
    if parts == 2:
        return [(i,) for i in range(1, n)]
    return [(i, j) for i in range(1, n - 1) for j in range(i + 1, n)]


def layout(captions: dict[str, Any], style: CaptionStyle) -> Layout:
    """Lay the caption JSON's segments out into cues."""
    cues: list[Cue] = []
    impossible: list[dict[str, Any]] = []
    for seg in captions["segments"]:
        words = [Word(w["text"], float(w["start"]), float(w["end"])) for w in seg["words"]]
        if not words:  # a turn with nothing to say on screen
            continue
        start = 0
        while start < len(words):
            end = _cue_end(words, start, style)
            lines = break_lines([w.text for w in words[start:end]], style)
            if lines is None:  # one word wider than a line: shown whole, and reported
                lines = [words[start].text]
                impossible.append({"segment": seg["index"], "word": words[start].text,
                                   "reason": f"the word is wider than "
                                             f"{style.max_chars_per_line} columns"})
            cues.append(Cue(words[start].start, words[end - 1].end, lines, [seg["speaker"]],
                            [seg["speaker_id"]], words[start:end], [seg["index"]], start))
            start = end
    if style.dual_speaker:
        cues = _pair_short_turns(cues, style)
    _time(cues, style)
    return Layout(cues, impossible)


def _cue_end(words: list[Word], start: int, style: CaptionStyle) -> int:
    """Where the cue beginning at `start` ends (exclusive): all the rest if it fits, else the
    best break among the ends that fit."""
    candidates: list[int] = []
    for end in range(start + 1, len(words) + 1):
        span = words[end - 1].end - words[start].start
        if end > start + 1 and (span > style.max_cue_seconds
                                or break_lines([w.text for w in words[start:end]], style)
                                is None):
            break
        candidates.append(end)
    if candidates[-1] == len(words):
        return len(words)
    capacity = style.max_chars_per_line * style.max_lines

    def score(end: int) -> float:
        following = words[end].text if end < len(words) else None
        filled = sum(len(w.text) + 1 for w in words[start:end]) / capacity
        rest = sum(len(w.text) + 1 for w in words[end:]) / capacity
        orphan = 2.0 if rest < 0.15 else 0.0  # a last cue of one short word reads badly
        # speech follows at once, so a cue shorter than the minimum could not last longer
        flash = 2.5 if words[end - 1].end - words[start].start < style.min_cue_seconds else 0.0
        return _break_class(words[end - 1].text, following) + 1.5 * filled - orphan - flash

    return max(candidates, key=score)


def _pair_short_turns(cues: list[Cue], style: CaptionStyle) -> list[Cue]:
    """Two one-line turns of different speakers in quick succession share one cue."""
    paired: list[Cue] = []
    index = 0
    while index < len(cues):
        cue = cues[index]
        nxt = cues[index + 1] if index + 1 < len(cues) else None
        if (nxt is not None and len(cue.lines) == 1 and len(nxt.lines) == 1
                and len(cue.speakers) == len(nxt.speakers) == 1
                and cue.speaker_ids != nxt.speaker_ids
                and _whole_turn(cues, index) and _whole_turn(cues, index + 1)
                and nxt.start - cue.end <= 1.0
                and nxt.end - cue.start <= style.max_cue_seconds
                and all(columns(DUAL_PREFIX + line, style.width_aware)
                        <= style.max_chars_per_line for line in cue.lines + nxt.lines)):
            paired.append(Cue(cue.start, nxt.end, [DUAL_PREFIX + cue.lines[0],
                                                   DUAL_PREFIX + nxt.lines[0]],
                              cue.speakers + nxt.speakers, cue.speaker_ids + nxt.speaker_ids,
                              cue.words + nxt.words, cue.segments + nxt.segments,
                              cue.first_word))
            index += 2
            continue
        paired.append(cue)
        index += 1
    return paired


def _whole_turn(cues: list[Cue], index: int) -> bool:
    """True when the cue is its turn's only cue."""
    segment = cues[index].segments
    return sum(1 for cue in cues[max(0, index - 1):index + 2] if cue.segments == segment) == 1


def _time(cues: list[Cue], style: CaptionStyle) -> None:
    """Lengthen cues into the silence after them (minimum duration, reading speed), keeping
    the minimum gap before the next cue; a cue never starts before its first word."""
    gap = style.min_gap_seconds
    for index, cue in enumerate(cues):
        limit = cues[index + 1].start - gap if index + 1 < len(cues) else math.inf
        wanted = max(cue.end, _wanted_end(cue, style))
        cue.end = max(min(wanted, limit), min(cue.end, limit))
        cue.end = max(cue.end, cue.start + 1e-3)


def _wanted_end(cue: Cue, style: CaptionStyle) -> float:
    """When the cue would end to be read comfortably: its minimum duration, reading speed
    and words per minute, within its longest allowed time."""
    seconds = max(style.min_cue_seconds, cue.reading_chars / style.max_chars_per_second)
    if style.max_words_per_minute is not None:
        seconds = max(seconds, len(cue.words) * 60 / style.max_words_per_minute)
    return cue.start + min(seconds, style.max_cue_seconds)


@dataclass(frozen=True)
class Insertion:
    """Silence `fit: pauses` adds: after segment `segment` (before_word None), or inside it,
    in the gap before its word `before_word` (where a cue of a long turn ends)."""

    segment: int
    before_word: int | None
    seconds: float


def extra_pauses(captions: dict[str, Any], style: CaptionStyle) -> list[Insertion]:
    """The silence to add so that every cue can stay up long enough to be read
    (`"fit": "pauses"`): speech is never stretched, only the silence between words grows,
    after a turn or where a cue ends inside one. Later cues move, the layout stays."""
    laid = layout(captions, style)
    added: list[Insertion] = []
    gap = style.min_gap_seconds
    for index, cue in enumerate(laid.cues[:-1]):
        nxt = laid.cues[index + 1]
        short = _wanted_end(cue, style) + gap - nxt.start
        if short <= 1e-6:
            continue
        if nxt.segments[0] == cue.segments[-1]:  # the next cue goes on with the same turn
            added.append(Insertion(nxt.segments[0], nxt.first_word, short))
        else:
            added.append(Insertion(cue.segments[-1], None, short))
    return added


def apply_insertions(captions: dict[str, Any], added: list[Insertion]) -> dict[str, Any]:
    """The caption JSON as it is once the silence is added: every later word moves."""
    out = json.loads(json.dumps(captions))
    for insertion in added:
        for segment in out["segments"]:
            if segment["index"] < insertion.segment:
                continue
            first = (len(segment["words"]) if insertion.before_word is None
                     else insertion.before_word) if segment["index"] == insertion.segment else 0
            for word in segment["words"][first:]:
                word["start"] += insertion.seconds
                word["end"] += insertion.seconds
            if segment["index"] > insertion.segment:
                segment["start"] += insertion.seconds
            if segment["index"] > insertion.segment or insertion.before_word is not None:
                segment["end"] += insertion.seconds
    out["duration"] = captions["duration"] + sum(i.seconds for i in added)
    return out


def quality_report(laid: Layout, style: CaptionStyle, style_name: str) -> dict[str, Any]:
    """How the cues measure against the profile, with every violation and its reason."""
    cues = laid.cues
    violations: list[dict[str, Any]] = []
    counts = {"chars_per_line": 0, "lines": 0, "cue_seconds": 0, "min_cue_seconds": 0,
              "chars_per_second": 0, "words_per_minute": 0, "gap": 0}

    def flag(index: int, limit: str, reason: str) -> None:
        counts[limit] += 1
        violations.append({"cue": index, "limit": limit, "reason": reason})

    speeds = []
    gaps = []
    for index, cue in enumerate(cues):
        widest = max(columns(line, style.width_aware) for line in cue.lines)
        if widest > style.max_chars_per_line:
            flag(index, "chars_per_line", f"a line is {widest} columns wide, more than "
                                          f"{style.max_chars_per_line}")
        if len(cue.lines) > style.max_lines:
            flag(index, "lines", f"{len(cue.lines)} lines, more than {style.max_lines}")
        if cue.seconds > style.max_cue_seconds + 1e-6:
            flag(index, "cue_seconds", f"shown {cue.seconds:.2f} s, longer than "
                                       f"{style.max_cue_seconds} s")
        if cue.seconds < style.min_cue_seconds - 1e-6:
            flag(index, "min_cue_seconds", f"shown {cue.seconds:.2f} s, shorter than "
                                           f"{style.min_cue_seconds:.2f} s")
        speed = cue.chars_per_second
        speeds.append(speed)
        if speed > style.max_chars_per_second + 1e-6:
            flag(index, "chars_per_second", f"{speed:.1f} characters per second, more than "
                                            f"{style.max_chars_per_second}")
        if style.max_words_per_minute is not None:
            wpm = len(cue.words) * 60 / max(cue.seconds, 1e-3)
            if wpm > style.max_words_per_minute + 1e-6:
                flag(index, "words_per_minute", f"{wpm:.0f} words per minute, more than "
                                                f"{style.max_words_per_minute:.0f}")
        if index + 1 < len(cues):
            between = cues[index + 1].start - cue.end
            gaps.append(between)
            if between < style.min_gap_seconds - 1e-6:
                flag(index, "gap", f"{between * 1000:.0f} ms before the next cue, less than "
                                   f"{style.min_gap_frames} frames")
    ordered = sorted(speeds)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0
    return {
        "style": style_name, "limits": style.model_dump(), "cues": len(cues),
        "max_chars_per_second": round(max(speeds, default=0.0), 2),
        "p95_chars_per_second": round(p95, 2),
        "shortest_gap_seconds": round(min(gaps), 3) if gaps else None,
        "over_limits": counts,
        "cues_within_limits": len(cues) - len({v["cue"] for v in violations}),
        "violations": violations, "impossible": laid.impossible,
    }
