"""Caption renderings of the caption JSON: WebVTT with voice spans and SRT with name prefixes."""

from __future__ import annotations

import json
from typing import Any

CAPTION_FORMATS = ("vtt", "srt", "json")
CONTENT_TYPES = {"vtt": "text/vtt", "srt": "application/x-subrip", "json": "application/json"}


def _clock(seconds: float, decimal_mark: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


def _one_line(text: str) -> str:
    # A blank line ends a cue in both formats, so captions keep each segment on one line.
    return " ".join(text.split())


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(captions: dict[str, Any]) -> str:
    lines = ["WEBVTT", ""]
    for seg in captions["segments"]:
        lines.append(str(seg["index"] + 1))
        lines.append(f"{_clock(seg['start'], '.')} --> {_clock(seg['end'], '.')}")
        name = _vtt_escape(_one_line(seg["speaker"])) or "Speaker"
        lines.append(f"<v {name}>{_vtt_escape(_one_line(seg['text']))}")
        lines.append("")
    return "\n".join(lines)


def render_srt(captions: dict[str, Any]) -> str:
    lines: list[str] = []
    for number, seg in enumerate(captions["segments"], start=1):
        lines.append(str(number))
        lines.append(f"{_clock(seg['start'], ',')} --> {_clock(seg['end'], ',')}")
        lines.append(f"{_one_line(seg['speaker'])}: {_one_line(seg['text'])}")
        lines.append("")
    return "\n".join(lines)


def render(captions: dict[str, Any], fmt: str) -> str:
    if fmt == "vtt":
        return render_vtt(captions)
    if fmt == "srt":
        return render_srt(captions)
    return json.dumps(captions, ensure_ascii=False, indent=2)
