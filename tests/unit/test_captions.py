"""Caption JSON, WebVTT and SRT renderings; ffmpeg must accept both text formats."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from voicereel.domain.captions import render, render_srt, render_vtt
from voicereel.domain.timeline import Segment, TimedWord, Timeline


def _timeline() -> Timeline:
    tl = Timeline(sample_rate=24000, total_samples=24000 * 3725 + 12)
    tl.segments = [
        Segment(0, "spk_1", "Alice <A&B>", "Hello there.", 0, 26880,
                [TimedWord("Hello", 1200, 9840), TimedWord("there.", 9840, 26000)]),
        Segment(1, "spk_2", "Bob", "Hi!\nHow are you?", 32880, 24000 * 3725,
                [TimedWord("Hi!", 33000, 40000)]),
    ]
    return tl


def test_json_times_are_sample_exact() -> None:
    data = _timeline().to_json()
    assert data["duration"] == (24000 * 3725 + 12) / 24000
    assert data["speakers"] == {"spk_1": "Alice <A&B>", "spk_2": "Bob"}
    first = data["segments"][0]
    assert first["start"] == 0.0 and first["end"] == 26880 / 24000 == 1.12
    assert first["words"][0] == {"text": "Hello", "start": 0.05, "end": 0.41}


def test_vtt_uses_voice_spans_and_escapes() -> None:
    vtt = render_vtt(_timeline().to_json())
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.120\n")
    assert "<v Alice &lt;A&amp;B&gt;>Hello there." in vtt
    # A line break inside a text would end the cue: it becomes a space.
    assert "<v Bob>Hi! How are you?" in vtt
    assert "01:02:05.000" in vtt


def test_srt_prefixes_names() -> None:
    srt = render_srt(_timeline().to_json())
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,120\nAlice <A&B>: Hello there.\n")
    assert "2\n00:00:01,370 --> 01:02:05,000\nBob: Hi! How are you?\n" in srt


@pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("CI"),
                    reason="ffmpeg is not installed (CI installs it and never skips)")
@pytest.mark.parametrize("fmt", ["vtt", "srt"])
def test_ffmpeg_reads_captions(fmt: str, tmp_path: Path) -> None:
    source = tmp_path / f"in.{fmt}"
    source.write_text(render(_timeline().to_json(), fmt))
    target = tmp_path / ("out.srt" if fmt == "vtt" else "out.vtt")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), str(target)], check=True)
    assert "How are you?" in target.read_text()
