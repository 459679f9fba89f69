"""Script files: screenplay parsing, JSON detection and speaker-name resolution."""

from __future__ import annotations

from typing import Any

import pytest

from voicereel.client.screenplay import (
    ScriptError,
    Turn,
    parse_screenplay,
    parse_script,
    resolve_speakers,
    script_edits,
)
from voicereel.domain.revisions import RevisionRequest, apply_edits
from voicereel.domain.script import SynthesisRequest

SPEAKERS = [("spk_a", "Alice"), ("spk_b", "Bob"), ("spk_m", "Dr. Mary Jones")]


def test_one_turn_per_line_blank_lines_ignored() -> None:
    turns = parse_screenplay("\ufeffAlice: Hello there.\r\n\r\n  Bob :  Hi! How are you?  \n\n")
    assert [(t.speaker, t.text, t.line_number) for t in turns] == [
        ("Alice", "Hello there.", 1), ("Bob", "Hi! How are you?", 3)]


def test_only_the_first_colon_ends_the_name() -> None:
    (turn,) = parse_screenplay("Dr.  Mary Jones: Note: the time is 10:30.")
    assert (turn.speaker, turn.text) == ("Dr. Mary Jones", "Note: the time is 10:30.")


def test_inline_pauses_stay_in_the_text() -> None:
    (turn,) = parse_screenplay("Alice: Wait [pause:1s] for it.")
    assert turn.text == "Wait [pause:1s] for it." and turn.pause_after_ms is None


def test_pause_lines_lengthen_the_pause_after_the_previous_turn() -> None:
    turns = parse_screenplay("Alice: One.\n[pause:1s]\n[PAUSE: 250ms]\nBob: Two.\n")
    assert [t.pause_after_ms for t in turns] == [1250, None]


def test_a_pause_before_the_first_turn_opens_the_track() -> None:
    (turn,) = parse_screenplay("[pause:0.5s]\nAlice: Hello.")
    assert turn.text == "[pause:500ms] Hello."


def test_every_bad_line_is_reported_with_its_number() -> None:
    with pytest.raises(ScriptError) as caught:
        parse_screenplay("Alice: fine\nno colon here\nBob:\n[pause:soon]\n")
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("line 2: expected 'Speaker: what they say'")
    assert problems[1] == "line 3: Bob says nothing"
    assert problems[2].startswith("line 4: write a pause as [pause:1.5s]")


def test_an_empty_screenplay_is_refused() -> None:
    with pytest.raises(ScriptError, match="no turns"):
        parse_screenplay("\n\n   \n")


def test_names_resolve_case_insensitively_and_ids_pass_through() -> None:
    turns = parse_screenplay("alice: One.\n[pause:2s]\nBOB: Two.\nspk_m: Three.\n"
                             "dr. mary jones: Four.")
    assert resolve_speakers(turns, SPEAKERS) == [
        {"speaker_id": "spk_a", "text": "One.", "pause_after_ms": 2000},
        {"speaker_id": "spk_b", "text": "Two."},
        {"speaker_id": "spk_m", "text": "Three."},
        {"speaker_id": "spk_m", "text": "Four."},
    ]


def test_unknown_names_list_the_known_speakers_once_per_name() -> None:
    turns = parse_screenplay("Alice: Hi.\nCarol: Hello.\nCarol: Again.\nDave: Yo.")
    with pytest.raises(ScriptError) as caught:
        resolve_speakers(turns, SPEAKERS)
    assert caught.value.problems == [
        "line 2: no speaker named 'Carol'; known speakers: Alice, Bob, Dr. Mary Jones",
        "line 4: no speaker named 'Dave'; known speakers: Alice, Bob, Dr. Mary Jones",
    ]


def test_ambiguous_names_list_the_matching_ids() -> None:
    turns = [Turn("alice", "Hi.", 1)]
    with pytest.raises(ScriptError, match=r"'alice' names 2 speakers: spk_a \(Alice\), "
                                          r"spk_x \(ALICE\); write the speaker id instead"):
        resolve_speakers(turns, [*SPEAKERS, ("spk_x", "ALICE")])


def test_no_speakers_at_all_says_how_to_add_one() -> None:
    with pytest.raises(ScriptError, match="has no speakers yet"):
        resolve_speakers([Turn("Alice", "Hi.", 1)], [])


def test_json_scripts_are_recognised_by_name_or_content() -> None:
    body = '{"script": [{"speaker_id": "spk_a", "text": "Hi."}], "output": {"format": "mp3"}}'
    assert parse_script(body).body == {"script": [{"speaker_id": "spk_a", "text": "Hi."}],
                                       "output": {"format": "mp3"}}
    bare = '[{"speaker_id": "spk_a", "text": "Hi."}]'
    assert parse_script(bare).body == {"script": [{"speaker_id": "spk_a", "text": "Hi."}]}
    with pytest.raises(ScriptError, match="JSON is not valid"):
        parse_script("Alice: Hi.", "script.json")


def test_a_screenplay_may_open_with_a_pause_line() -> None:
    parsed = parse_script("[pause:1s]\nAlice: Hi.\n", "dialogue.txt")
    assert not parsed.is_json and parsed.turns[0].text == "[pause:1000ms] Hi."


def test_json_without_a_script_is_refused() -> None:
    with pytest.raises(ScriptError, match="a JSON script is"):
        parse_script('{"lines": []}')


def _line(speaker: str, text: str, **rest: Any) -> dict[str, Any]:
    return {"speaker_id": speaker, "text": text, **rest}


BASE_SCRIPT = [_line("spk_a", f"Line {i}.") if i % 2 else _line("spk_b", f"Line {i}.")
               for i in range(8)]


def test_an_unchanged_script_has_no_edits() -> None:
    assert script_edits(BASE_SCRIPT, [dict(line) for line in BASE_SCRIPT]) == []


@pytest.mark.parametrize(("edited", "expected_edits"), [
    ([*BASE_SCRIPT[:3], _line("spk_a", "Line three, fixed."), *BASE_SCRIPT[4:]],
     [{"line": 3, "text": "Line three, fixed."}]),
    ([*BASE_SCRIPT[:5], *BASE_SCRIPT[6:]], [{"delete": 5}]),
    ([_line("spk_a", "Opening."), *BASE_SCRIPT],
     [{"insert_after": -1, "speaker_id": "spk_a", "text": "Opening."}]),
    ([*BASE_SCRIPT[:2], _line("spk_b", "Line 2.", pause_after_ms=900), *BASE_SCRIPT[3:]],
     [{"line": 2, "pause_after_ms": 900}]),
    ([*BASE_SCRIPT[:1], _line("spk_b", "Line 1."), *BASE_SCRIPT[2:]],
     [{"line": 1, "speaker_id": "spk_b"}]),
    ([*BASE_SCRIPT[:4], _line("spk_a", "New A."), _line("spk_b", "New B."), *BASE_SCRIPT[7:]],
     [{"line": 4, "speaker_id": "spk_a", "text": "New A."},
      {"line": 5, "speaker_id": "spk_b", "text": "New B."}, {"delete": 6}]),
    ([*BASE_SCRIPT[:7], _line("spk_a", "Line 7.", speed=1.2), _line("spk_b", "Coda.")],
     [{"line": 7, "speed": 1.2}, {"insert_after": 7, "speaker_id": "spk_b", "text": "Coda."}]),
])
def test_script_edits_send_only_what_changed_and_rebuild_the_edited_script(
        edited: list[dict[str, Any]], expected_edits: list[dict[str, Any]]) -> None:
    edits = script_edits(BASE_SCRIPT, edited)
    assert edits == expected_edits
    current = SynthesisRequest.model_validate({"script": BASE_SCRIPT})
    revised = apply_edits(current, RevisionRequest.model_validate({"edits": edits}))
    want = SynthesisRequest.model_validate({"script": edited})
    assert revised.request.script == want.script
    changed_lines = sum(1 for edit in edits if "insert_after" in edit or "text" in edit
                        or "speaker_id" in edit or "speed" in edit)
    assert len(revised.to_render) == changed_lines
