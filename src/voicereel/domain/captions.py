"""Caption renderings of the caption JSON, laid out into cues by a style profile.

Formats: WebVTT (voice spans; optional karaoke timestamps per word, `::cue` colours and a
position per speaker), SRT (optional speaker prefix, through `srt`), TTML / IMSC 1.1 Text (the
speaker as `ttm:agent`), ASS (a style per speaker, optional `\\k` karaoke, through `pysubs2`),
a plain transcript (`Name: line`), the caption JSON itself, and the layout's quality report.
The request's `captions` is either a list of formats (the first API's form) or the options.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any, Literal

import pysubs2
import srt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voicereel.domain.caption_layout import (
    DUAL_PREFIX,
    PROFILES,
    CaptionStyle,
    Cue,
    Insertion,
    Layout,
    StyleName,
    layout,
    quality_report,
)

CaptionFormat = Literal["vtt", "srt", "json", "ttml", "ass", "txt"]
DEFAULT_CAPTIONS: tuple[CaptionFormat, ...] = ("vtt", "srt", "json")
REPORT = "report"  # the quality report, kept next to the captions as captions-report.json
CONTENT_TYPES = {"vtt": "text/vtt", "srt": "application/x-subrip", "json": "application/json",
                 "ttml": "application/ttml+xml", "ass": "text/x-ssa", "txt": "text/plain",
                 REPORT: "application/json"}
# Speaker colours (VTT ::cue, ASS styles), in turn order: legible on black video.
COLOURS = ("#FFFFFF", "#FFFF00", "#00FFFF", "#00FF00", "#FF9EFF", "#FFB347")
TTML_NS = {"tt": "http://www.w3.org/ns/ttml", "ttm": "http://www.w3.org/ns/ttml#metadata",
           "tts": "http://www.w3.org/ns/ttml#styling",
           "ttp": "http://www.w3.org/ns/ttml#parameter"}
IMSC_TEXT_PROFILE = "http://www.w3.org/ns/ttml/profile/imsc1.1/text"
XML_NS = "http://www.w3.org/XML/1998/namespace"


class CaptionOptions(BaseModel):
    """`captions` of a request: the formats, the style profile (with any limit overridden)
    and per-format options."""

    model_config = ConfigDict(extra="forbid")

    formats: list[CaptionFormat] = Field(default_factory=lambda: list(DEFAULT_CAPTIONS))
    style: StyleName = "netflix-en"
    max_chars_per_line: int | None = Field(None, ge=8, le=120)
    max_lines: int | None = Field(None, ge=1, le=3)
    max_cue_seconds: float | None = Field(None, ge=1.0, le=30.0)
    min_cue_seconds: float | None = Field(None, ge=0.0, le=5.0)
    max_chars_per_second: float | None = Field(None, ge=5.0, le=60.0)
    min_gap_frames: int | None = Field(None, ge=0, le=12)
    frame_rate: float | None = Field(None, ge=10.0, le=120.0)
    dual_speaker: bool | None = None
    speaker_prefix: bool = True  # SRT: "Name: " before each turn
    karaoke: bool = False  # VTT inline word timestamps, ASS \k
    speaker_styles: bool = False  # VTT ::cue colour and position per speaker
    fit: Literal["pauses"] | None = Field(None, description=(
        "lengthen the pauses between lines (never speech) so that cues keep the reading speed"))
    per_speaker: bool = Field(False, description="also one caption file per speaker")

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        return {"formats": value} if isinstance(value, list) else value

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: list[CaptionFormat]) -> list[CaptionFormat]:
        return list(dict.fromkeys(value))

    def profile(self) -> CaptionStyle:
        """The style profile with this request's overrides."""
        overrides = {name: value for name, value in self.model_dump().items()
                     if name in CaptionStyle.model_fields and value is not None}
        return PROFILES[self.style].model_copy(update=overrides)


def _clock(seconds: float, decimal_mark: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _name(speaker: str) -> str:
    # one line, and nothing that ends a VTT voice tag
    return " ".join(speaker.split()) or "Speaker"


def _speaker_order(captions: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(seg["speaker_id"] for seg in captions["segments"]))


def _karaoke_line(line: str, words: list[Any], first: int) -> tuple[str, int]:
    """A VTT line with a timestamp before each of its words after the cue's first."""
    out = []
    parts = line.split(" ")
    index = first
    for position, part in enumerate(parts):
        if part == DUAL_PREFIX.strip() and position == 0:
            out.append(part)
            continue
        stamp = f"<{_clock(words[index].start, '.')}>" if index > 0 else ""
        out.append(stamp + _vtt_escape(part))
        index += 1
    return " ".join(out), index


def render_vtt(captions: dict[str, Any], cues: list[Cue], options: CaptionOptions) -> str:
    order = _speaker_order(captions)
    out = ["WEBVTT", ""]
    if options.speaker_styles:
        out.append("STYLE")
        for number, sid in enumerate(order):
            name = next(s["speaker"] for s in captions["segments"] if s["speaker_id"] == sid)
            voice = _name(name).replace('"', "")
            out.append(f'::cue(v[voice="{voice}"]) {{ color: {COLOURS[number % len(COLOURS)]}; }}')
        out.append("")
    for number, cue in enumerate(cues, start=1):
        settings = ""
        if options.speaker_styles and len(cue.speaker_ids) == 1:
            left = order.index(cue.speaker_ids[0]) % 2 == 0
            settings = " position:10% align:start" if left else " position:90% align:end"
        out.append(str(number))
        out.append(f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}{settings}")
        word = 0
        for index, line in enumerate(cue.lines):
            speaker = cue.speakers[index] if len(cue.speakers) > 1 else cue.speakers[0]
            if options.karaoke:
                text, word = _karaoke_line(line, cue.words, word)
            else:
                text = _vtt_escape(line)
            voice = f"<v {_vtt_escape(_name(speaker))}>" if index == 0 or len(
                cue.speakers) > 1 else ""
            out.append(voice + text)
        out.append("")
    return "\n".join(out)


def render_srt(captions: dict[str, Any], cues: list[Cue], options: CaptionOptions) -> str:
    subtitles = []
    for number, cue in enumerate(cues, start=1):
        lines = list(cue.lines)
        if options.speaker_prefix and len(cue.speakers) == 1:
            lines[0] = f"{_name(cue.speakers[0])}: {lines[0]}"
        elif options.speaker_prefix:  # "- Name: text", one turn per line
            lines = [f"{DUAL_PREFIX}{_name(name)}: {line.removeprefix(DUAL_PREFIX)}"
                     for name, line in zip(cue.speakers, lines, strict=True)]
        subtitles.append(srt.Subtitle(number, timedelta(seconds=cue.start),
                                      timedelta(seconds=cue.end), "\n".join(lines)))
    return str(srt.compose(subtitles, reindex=False))


def render_ass(captions: dict[str, Any], cues: list[Cue], options: CaptionOptions) -> str:
    subs = pysubs2.SSAFile()
    subs.info["Title"] = "VoiceReel captions"
    subs.info["PlayResX"], subs.info["PlayResY"] = "1920", "1080"
    names = {seg["speaker_id"]: _name(seg["speaker"]) for seg in captions["segments"]}
    for number, sid in enumerate(_speaker_order(captions)):
        colour = COLOURS[number % len(COLOURS)].lstrip("#")
        subs.styles[names[sid]] = pysubs2.SSAStyle(
            fontname="Arial", fontsize=54, outline=2, shadow=0, marginv=60,
            primarycolor=pysubs2.Color(int(colour[0:2], 16), int(colour[2:4], 16),
                                       int(colour[4:6], 16)))
    for cue in cues:
        if options.karaoke:
            lines, word = [], 0
            for line in cue.lines:
                parts: list[str] = []
                for part in line.split(" "):
                    if part == DUAL_PREFIX.strip() and not parts:
                        parts.append(part)
                        continue
                    spoken = cue.words[word]
                    following = cue.words[word + 1].start if word + 1 < len(cue.words) \
                        else spoken.end
                    centis = max(1, round((following - spoken.start) * 100))
                    parts.append(f"{{\\k{centis}}}{_ass_escape(part)}")
                    word += 1
                lines.append(" ".join(parts))
        else:
            lines = [_ass_escape(line) for line in cue.lines]
        subs.events.append(pysubs2.SSAEvent(
            start=round(cue.start * 1000), end=round(cue.end * 1000), text="\\N".join(lines),
            style=names[cue.speaker_ids[0]], name=", ".join(cue.speakers)))
    return str(subs.to_string("ass"))


def _ass_escape(text: str) -> str:
    # braces open override blocks and a backslash starts a tag in ASS text
    return text.replace("\\", "\u29f5").replace("{", "(").replace("}", ")")


def render_ttml(captions: dict[str, Any], cues: list[Cue], lang: str) -> str:
    for prefix, uri in TTML_NS.items():
        ET.register_namespace("" if prefix == "tt" else prefix, uri)

    def tag(prefix: str, name: str) -> str:
        return f"{{{TTML_NS[prefix]}}}{name}"

    root = ET.Element(tag("tt", "tt"), {
        f"{{{XML_NS}}}lang": lang, tag("ttp", "timeBase"): "media",
        tag("ttp", "contentProfiles"): IMSC_TEXT_PROFILE})
    head = ET.SubElement(root, tag("tt", "head"))
    metadata = ET.SubElement(head, tag("tt", "metadata"))
    agents = {}
    for number, sid in enumerate(_speaker_order(captions)):
        name = next(s["speaker"] for s in captions["segments"] if s["speaker_id"] == sid)
        agents[sid] = f"agent{number + 1}"
        agent = ET.SubElement(metadata, tag("ttm", "agent"),
                              {f"{{{XML_NS}}}id": agents[sid], "type": "person"})
        ET.SubElement(agent, tag("ttm", "name"), {"type": "full"}).text = _name(name)
    styling = ET.SubElement(head, tag("tt", "styling"))
    ET.SubElement(styling, tag("tt", "style"), {
        f"{{{XML_NS}}}id": "base", tag("tts", "color"): "white",
        tag("tts", "textAlign"): "center", tag("tts", "fontSize"): "100%"})
    regions = ET.SubElement(head, tag("tt", "layout"))
    ET.SubElement(regions, tag("tt", "region"), {
        f"{{{XML_NS}}}id": "bottom", tag("tts", "origin"): "10% 75%",
        tag("tts", "extent"): "80% 20%", tag("tts", "displayAlign"): "after"})
    body = ET.SubElement(root, tag("tt", "body"), {"region": "bottom", "style": "base"})
    div = ET.SubElement(body, tag("tt", "div"))
    for cue in cues:
        p = ET.SubElement(div, tag("tt", "p"), {
            "begin": _clock(cue.start, "."), "end": _clock(cue.end, "."),
            tag("ttm", "agent"): " ".join(dict.fromkeys(agents[s] for s in cue.speaker_ids))})
        p.text = cue.lines[0]
        for line in cue.lines[1:]:
            ET.SubElement(p, tag("tt", "br")).tail = line
    return str(ET.tostring(root, encoding="unicode", xml_declaration=True)) + "\n"


def render_txt(captions: dict[str, Any]) -> str:
    """A transcript: one `Name: line` per turn."""
    return "".join(f"{_name(seg['speaker'])}: {' '.join(seg['text'].split())}\n"
                   for seg in captions["segments"])


def lay_out(captions: dict[str, Any], options: CaptionOptions) -> Layout:
    return layout(captions, options.profile())


def render(captions: dict[str, Any], fmt: str, options: CaptionOptions | None = None,
           laid: Layout | None = None, lang: str = "en") -> str:
    """The caption JSON in `fmt`, laid out (`laid`, else now) by the options' profile."""
    options = options or CaptionOptions()
    if fmt == "json":
        return json.dumps(captions, ensure_ascii=False, indent=2)
    if fmt == "txt":
        return render_txt(captions)
    laid = laid or lay_out(captions, options)
    if fmt == "vtt":
        return render_vtt(captions, laid.cues, options)
    if fmt == "srt":
        return render_srt(captions, laid.cues, options)
    if fmt == "ass":
        return render_ass(captions, laid.cues, options)
    if fmt == "ttml":
        return render_ttml(captions, laid.cues, lang)
    raise ValueError(f"unknown caption format {fmt}")


def report(laid: Layout, options: CaptionOptions, added: list[Insertion]) -> str:
    """The quality report as JSON, with the silence `fit: pauses` added."""
    measured = quality_report(laid, options.profile(), options.style)
    measured["fit"] = options.fit
    measured["added_silence"] = [
        {"line": i.segment, "before_word": i.before_word, "ms": round(i.seconds * 1000)}
        for i in added]
    return json.dumps(measured, ensure_ascii=False, indent=2)


def for_speaker(captions: dict[str, Any], speaker_id: str) -> dict[str, Any]:
    """The caption JSON with only one speaker's turns (a per-speaker track)."""
    return {**captions, "speakers": {speaker_id: captions["speakers"][speaker_id]},
            "segments": [s for s in captions["segments"] if s["speaker_id"] == speaker_id]}
