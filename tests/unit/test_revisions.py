"""Revision edits: the new script, and which lines keep their units."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from voicereel.domain.revisions import RevisionRequest, apply_edits
from voicereel.domain.script import SynthesisRequest
from voicereel.errors import ValidationFailed


def job(lines: int = 12) -> SynthesisRequest:
    return SynthesisRequest.model_validate({
        "script": [{"speaker_id": f"spk_{i % 2}", "text": f"Line number {i}."}
                   for i in range(lines)],
        "output": {"format": "mp3", "stems": True}, "captions": ["vtt", "json"]})


def revise(previous: SynthesisRequest, *edits: dict[str, Any], **rest: Any) -> Any:
    return apply_edits(previous, RevisionRequest.model_validate({"edits": list(edits), **rest}))


def test_the_issues_revision_renders_exactly_two_lines() -> None:
    previous = job()
    revised = revise(previous, {"line": 4, "text": "Line four, said better."},
                     {"line": 8, "retake": True}, {"delete": 10})
    script = revised.request.script
    assert len(script) == 11
    assert script[4].text == "Line four, said better." and script[4].speaker_id == "spk_0"
    assert [line.text for line in script[9:]] == ["Line number 9.", "Line number 11."]
    assert revised.to_render == [4, 8]
    assert revised.reused_from == [0, 1, 2, 3, None, 5, 6, 7, None, 9, 11]


def test_output_and_captions_default_to_the_previous_revisions() -> None:
    previous = job(3)
    same = revise(previous, {"line": 0, "retake": True}).request
    assert same.output == previous.output and same.captions.formats == ["vtt", "json"]
    other = revise(previous, {"line": 0, "retake": True}, output={"format": "wav"},
                   captions=["srt", "srt"]).request
    assert other.output.format == "wav" and not other.output.stems
    assert other.captions.formats == ["srt"]


def test_a_new_pause_keeps_the_lines_unit_and_a_new_speed_or_speaker_does_not() -> None:
    revised = revise(job(4), {"line": 0, "pause_after_ms": 900}, {"line": 1, "speed": 1.2},
                     {"line": 2, "speaker_id": "spk_9"}, {"line": 3, "text": "Line number 3."})
    assert revised.request.script[0].pause_after_ms == 900
    assert revised.reused_from == [0, None, None, 3]  # the same text is not a change


def test_a_null_pause_restores_the_default_pause() -> None:
    previous = revise(job(2), {"line": 0, "pause_after_ms": 900}).request
    back = revise(previous, {"line": 0, "pause_after_ms": None})
    assert back.request.script[0].pause_after_ms is None and back.reused_from == [0, 1]


def test_a_new_language_renders_the_line_and_a_null_one_restores_the_speakers() -> None:
    english = revise(job(3), {"line": 1, "lang": "EN-us"})
    assert english.request.script[1].lang == "en-US" and english.reused_from == [0, None, 2]
    back = revise(english.request, {"line": 1, "lang": None})
    assert back.request.script[1].lang is None and back.reused_from == [0, None, 2]
    same = revise(english.request, {"line": 1, "lang": "en-US"})
    assert same.reused_from == [0, 1, 2]
    with pytest.raises(ValidationError):
        RevisionRequest.model_validate({"edits": [{"line": 0, "lang": "klingon"}]})


def test_insertions_land_after_their_line_in_the_order_given() -> None:
    revised = revise(job(3), {"insert_after": 1, "speaker_id": "spk_1", "text": "New A."},
                     {"insert_after": -1, "speaker_id": "spk_0", "text": "Opening."},
                     {"insert_after": 1, "speaker_id": "spk_1", "text": "New B."},
                     {"insert_after": 2, "speaker_id": "spk_0", "text": "Closing.",
                      "speed": 0.9})
    assert [line.text for line in revised.request.script] == [
        "Opening.", "Line number 0.", "Line number 1.", "New A.", "New B.", "Line number 2.",
        "Closing."]
    assert revised.reused_from == [None, 0, 1, None, None, 2, None]
    assert revised.request.script[-1].speed == 0.9


def test_edits_address_the_revised_revisions_lines_whatever_their_order() -> None:
    first = revise(job(5), {"delete": 0}, {"line": 4, "text": "Last."})
    second = revise(job(5), {"line": 4, "text": "Last."}, {"delete": 0})
    assert first == second
    assert first.request.script[-1].text == "Last." and first.reused_from == [1, 2, 3, None]


@pytest.mark.parametrize(("edits", "message"), [
    ([{"line": 12, "text": "Nope."}], "line 12 does not exist"),
    ([{"delete": 40}], "line 40 does not exist"),
    ([{"insert_after": 12, "speaker_id": "spk_0", "text": "Nope."}], "line 12 does not exist"),
    ([{"line": 3, "text": "A."}, {"line": 3, "speed": 1.5}], "more than one edit"),
    ([{"delete": 3}, {"line": 3, "retake": True}], "more than one edit"),
    ([{"line": 3}], "changes text, speaker_id, speed"),
    ([{"line": 3, "retake": False}], "changes text, speaker_id, speed"),
])
def test_edits_that_do_not_fit_the_script_are_refused_with_their_place(
        edits: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        revise(job(), *edits)
    (error,) = caught.value.errors or []
    assert error["loc"] == ["body", "edits", len(edits) - 1]
    assert message in str(error["msg"])


def test_deleting_every_line_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="delete the job instead"):
        revise(job(2), {"delete": 0}, {"delete": 1})


@pytest.mark.parametrize("body", [
    {"edits": []},
    {"edits": [{"line": -1, "text": "A."}]},
    {"edits": [{"line": 1, "text": "   "}]},
    {"edits": [{"line": 1, "speed": 3}]},
    {"edits": [{"line": 1, "colour": "red"}]},
    {"edits": [{"insert_after": 0, "text": "No speaker."}]},
    {"edits": [{"delete": 1}], "script": []},
])
def test_malformed_revision_requests_do_not_parse(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RevisionRequest.model_validate(body)
