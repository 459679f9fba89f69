"""Caption JSON and its renderings (WebVTT, SRT, TTML, ASS, transcript), each read back by an
independent parser, and by ffmpeg where it reads the format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pysubs2
import pytest
import srt
import webvtt
from lxml import etree

from tests.unit.test_caption_layout import LONG, caption_json
from voicereel.domain.caption_layout import Insertion
from voicereel.domain.captions import CaptionOptions, lay_out, render, report
from voicereel.domain.timeline import Segment, TimedWord, Timeline

TT = "http://www.w3.org/ns/ttml"
TTM = "http://www.w3.org/ns/ttml#metadata"


def _timeline() -> Timeline:
    tl = Timeline(sample_rate=24000, total_samples=24000 * 3725 + 12)
    tl.segments = [
        Segment(0, "spk_1", "Alice <A&B>", "Hello there.", 0, 26880,
                [TimedWord("Hello", 1200, 9840), TimedWord("there.", 9840, 26000)]),
        Segment(1, "spk_2", "Bob", "Hi! How are you?", 24000 * 3700, 24000 * 3725,
                [TimedWord("Hi!", 24000 * 3700, 24000 * 3701),
                 TimedWord("How", 24000 * 3701 + 2400, 24000 * 3702),
                 TimedWord("are", 24000 * 3702, 24000 * 3703),
                 TimedWord("you?", 24000 * 3703, 24000 * 3704)])]
    return tl


def _dialogue() -> dict[str, object]:
    return caption_json([("A", "Did you see the harbour this morning, <before> the {fog}?"),
                         ("B", LONG), ("A", "Yes & no."), ("B", "Then go.")], 0.07, 0.3)


def test_json_times_are_sample_exact() -> None:
    data = _timeline().to_json()
    assert data["duration"] == (24000 * 3725 + 12) / 24000
    assert data["speakers"] == {"spk_1": "Alice <A&B>", "spk_2": "Bob"}
    first = data["segments"][0]
    assert first["start"] == 0.0 and first["end"] == 26880 / 24000 == 1.12
    assert first["words"][0] == {"text": "Hello", "start": 0.05, "end": 0.41}


def test_vtt_uses_voice_spans_and_escapes() -> None:
    vtt = render(_timeline().to_json(), "vtt")
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.050 --> 00:00:01.083\n")
    assert "<v Alice &lt;A&amp;B&gt;>Hello there." in vtt
    assert "01:01:40.000 --> 01:01:44.000\n<v Bob>Hi! How are you?" in vtt


def test_srt_prefixes_names_unless_asked_not_to() -> None:
    text = render(_timeline().to_json(), "srt")
    assert text.startswith("1\n00:00:00,050 --> 00:00:01,083\nAlice <A&B>: Hello there.\n")
    bare = render(_timeline().to_json(), "srt", CaptionOptions(speaker_prefix=False))
    assert "\nHello there.\n" in bare and "Alice" not in bare


def _seconds(clock: str) -> float:
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_webvtt_py_reads_our_vtt_with_karaoke_and_styles() -> None:
    data = _dialogue()
    options = CaptionOptions(karaoke=True, speaker_styles=True)
    laid = lay_out(data, options)
    text = render(data, "vtt", options, laid)
    assert "STYLE\n::cue(v[voice=\"Speaker A\"]) { color: #FFFFFF; }" in text
    assert "position:10% align:start" in text and "position:90% align:end" in text
    parsed = webvtt.from_string(text)
    assert len(parsed.captions) == len(laid.cues)
    for caption, cue in zip(parsed.captions, laid.cues, strict=True):
        assert _seconds(caption.start) == pytest.approx(cue.start, abs=0.0006)
        assert _seconds(caption.end) == pytest.approx(cue.end, abs=0.0006)
    second_word = laid.cues[0].words[1]
    stamp = f"<00:00:0{second_word.start:.3f}>"
    assert stamp in text.splitlines()[text.splitlines().index(
        parsed.captions[0].identifier) + 2]
    assert "&lt;before&gt;" in text and "&amp;" in text
    assert "- Yes &amp; no." in render(data, "vtt")


def test_srt_library_reads_our_srt() -> None:
    data = _dialogue()
    laid = lay_out(data, CaptionOptions())
    subtitles = list(srt.parse(render(data, "srt", CaptionOptions(), laid)))
    assert [s.index for s in subtitles] == list(range(1, len(laid.cues) + 1))
    assert subtitles[0].content.startswith("Speaker A: Did you see")
    assert all(s.end > s.start for s in subtitles)
    words = " ".join(s.content.replace("Speaker A: ", "").replace("Speaker B: ", "")
                     .replace("- ", "") for s in subtitles).split()
    assert "- Speaker A: Yes & no.\n- Speaker B: Then go." in [s.content for s in subtitles]
    assert words == [w["text"] for seg in data["segments"] for w in seg["words"]]


def test_pysubs2_loads_our_ass_with_a_style_per_speaker_and_karaoke() -> None:
    data = _dialogue()
    text = render(data, "ass", CaptionOptions(karaoke=True))
    subs = pysubs2.SSAFile.from_string(text)
    assert {"Speaker A", "Speaker B"} <= set(subs.styles)
    assert subs.styles["Speaker B"].primarycolor != subs.styles["Speaker A"].primarycolor
    assert subs.events[0].style == "Speaker A" and "\\k" in subs.events[0].text
    assert "(fog)" in subs.events[0].plaintext  # braces would open an override block
    plain = pysubs2.SSAFile.from_string(render(data, "ass"))
    assert "\\k" not in plain.events[0].text and "\\N" in plain.events[1].text


def test_ttml_parses_with_the_imsc_text_profile_and_agents() -> None:
    data = _dialogue()
    laid = lay_out(data, CaptionOptions())
    root = etree.fromstring(render(data, "ttml", CaptionOptions(), laid, "en").encode())
    assert root.tag == f"{{{TT}}}tt"
    assert root.get("{http://www.w3.org/ns/ttml#parameter}contentProfiles") == \
        "http://www.w3.org/ns/ttml/profile/imsc1.1/text"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    agents = root.findall(f".//{{{TTM}}}agent")
    assert [a.find(f"{{{TTM}}}name").text for a in agents] == ["Speaker A", "Speaker B"]
    paragraphs = root.findall(f".//{{{TT}}}p")
    assert len(paragraphs) == len(laid.cues)
    assert paragraphs[0].get(f"{{{TTM}}}agent") == "agent1"
    assert "<before>" in "".join(paragraphs[0].itertext())


def test_the_transcript_is_one_name_and_line_per_turn() -> None:
    assert render(_timeline().to_json(), "txt") == (
        "Alice <A&B>: Hello there.\nBob: Hi! How are you?\n")


def test_the_report_is_json_with_the_added_pauses() -> None:
    data = _dialogue()
    options = CaptionOptions(fit="pauses")
    measured = json.loads(report(lay_out(data, options), options,
                                 [Insertion(1, None, 0.12), Insertion(1, 4, 0.2)]))
    assert measured["style"] == "netflix-en" and measured["fit"] == "pauses"
    assert measured["added_silence"] == [{"line": 1, "before_word": None, "ms": 120},
                                         {"line": 1, "before_word": 4, "ms": 200}]
    assert measured["cues"] == len(lay_out(data, options).cues)


@pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("CI"),
                    reason="ffmpeg is not installed (CI installs it and never skips)")
@pytest.mark.parametrize("fmt", ["vtt", "srt", "ass"])
def test_ffmpeg_reads_captions(fmt: str, tmp_path: Path) -> None:
    source = tmp_path / f"in.{fmt}"
    source.write_text(render(_dialogue(), fmt, CaptionOptions(karaoke=fmt != "srt")))
    target = tmp_path / ("out.srt" if fmt != "srt" else "out.vtt")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), str(target)], check=True)
    assert "harbour" in target.read_text()
