"""Cue layout by style profile, over a corpus of caption cases: every limit of every profile
holds on the produced cues (or is reported as impossible), every word appears once and in
order, and cue times sit on their words."""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicereel.domain.caption_layout import (
    DUAL_PREFIX,
    PROFILES,
    CaptionStyle,
    Layout,
    apply_insertions,
    break_lines,
    columns,
    extra_pauses,
    layout,
    quality_report,
)
from voicereel.domain.captions import CaptionOptions

LONG = ("The lighthouse keeper climbed the stairs every evening at dusk, lit the great lamp, "
        "wound the clockwork that turned the lens, and then sat by the window with a cup of "
        "tea and a notebook, writing down the ships that passed and the weather that came in "
        "from the sea, because nobody else would remember it.")

# (name, turns of (speaker, text), seconds per character of speech, pause between turns)
CORPUS: list[tuple[str, list[tuple[str, str]], float, float]] = [
    ("short line", [("A", "Hello there.")], 0.07, 0.25),
    ("two sentences", [("A", "Good morning. Welcome to the show.")], 0.07, 0.25),
    ("long line", [("A", LONG)], 0.07, 0.25),
    ("long line, fast", [("A", LONG)], 0.05, 0.25),
    ("long line, slow", [("A", LONG)], 0.1, 0.25),
    ("no punctuation", [("A", " ".join(["word"] * 60))], 0.07, 0.25),
    ("commas", [("A", "Red, green, blue, yellow, orange, purple, black, white, grey, brown, "
                      "pink, gold, silver, and every colour in between.")], 0.07, 0.25),
    ("conjunctions", [("A", "We went to the market and bought bread but the baker had no "
                            "rye so we came back because it was late and the shop closed.")],
     0.07, 0.25),
    ("numbers", [("A", "In 2026, 3,500 people paid $12.50 each, about 43,750 dollars in all, "
                       "on 12/02 at 3:30 pm.")], 0.07, 0.25),
    ("one very long word", [("A", "Look: " + "a" * 60 + " is not a word.")], 0.07, 0.25),
    ("a word as wide as a line", [("A", "x" * 42 + " fits.")], 0.07, 0.25),
    ("quick turns", [("A", "Yes."), ("B", "No."), ("A", "Yes!"), ("B", "No!"),
                     ("A", "Maybe?"), ("B", "Fine.")], 0.07, 0.1),
    ("quick turns, long pauses", [("A", "Yes."), ("B", "No."), ("A", "Well.")], 0.07, 2.0),
    ("dialogue", [("A", "Did you see the harbour this morning?"),
                  ("B", "I did. The boats were out early, all of them heading north, before "
                        "the fog came in over the water."),
                  ("A", "Then the storm is close.")], 0.07, 0.25),
    ("three speakers", [("A", "One."), ("B", "Two."), ("C", "Three."), ("A", "Four.")],
     0.07, 0.2),
    ("korean", [("A", "오늘 회의는 세 시 삼십 분에 시작합니다. 가격은 만 오천 원입니다."),
                ("B", "네, 알겠습니다. 회의실은 삼 층에 있고, 발표 자료는 제가 준비하겠습니다.")],
     0.12, 0.3),
    ("korean, long", [("A", "서울의 오래된 골목에는 작은 찻집이 있었고, 그곳 주인은 매일 아침 "
                            "손님들에게 따뜻한 보리차를 내어 주며 지난밤의 소식을 들려주었다.")],
     0.12, 0.3),
    ("mixed korean and latin", [("A", "KBS 뉴스는 오후 9시에 시작합니다, OK?")], 0.1, 0.3),
    ("emoji", [("A", "Great news 🎉 we shipped it 🚀 and everyone is happy 😀 today.")],
     0.07, 0.25),
    ("rtl arabic", [("A", "مرحبا بكم في البرنامج. اليوم نتحدث عن المنارات القديمة على الساحل.")],
     0.07, 0.25),
    ("rtl hebrew", [("A", "שלום לכולם. היום נדבר על מגדלורים ועל הים.")], 0.07, 0.25),
    ("quotes", [("A", '"Come in," she said. "The tea is ready, and so is the fire."')],
     0.07, 0.25),
    ("ellipsis", [("A", "Well… I am not sure… maybe tomorrow, or the day after.")], 0.07, 0.25),
    ("one word", [("A", "Hi.")], 0.07, 0.25),
    ("monologue", [("A", LONG + " " + LONG)], 0.07, 0.25),
    ("parenthesis", [("A", "The answer (as we found out later) was forty-two, not seven.")],
     0.07, 0.25),
    ("dashes", [("A", "It was late — too late — for the last ferry to the island.")],
     0.07, 0.25),
    ("question chain", [("A", "Who? When? Where? Why? How? And what then?")], 0.07, 0.25),
    ("long turn then short", [("A", LONG), ("B", "Right.")], 0.07, 0.25),
    ("short then long", [("B", "So?"), ("A", LONG)], 0.07, 0.25),
    ("fast quick turns", [("A", "Go now."), ("B", "Going.")], 0.04, 0.05),
    ("slow long pauses", [("A", "One. Two. Three.")], 0.15, 3.0),
]


def caption_json(turns: list[tuple[str, str]], per_char: float, pause: float) -> dict[str, Any]:
    """Caption JSON with word times as an engine gives them: each word as long as its
    characters, 40 ms between words, `pause` between turns."""
    segments, now = [], 0.2
    for index, (speaker, text) in enumerate(turns):
        words = []
        for word in text.split():
            length = 0.08 + per_char * len(word)
            words.append({"text": word, "start": round(now, 4), "end": round(now + length, 4)})
            now += length + 0.04
        segments.append({"index": index, "speaker_id": f"spk_{speaker}",
                         "speaker": f"Speaker {speaker}", "text": text,
                         "start": words[0]["start"], "end": words[-1]["end"], "words": words})
        now += pause
    return {"duration": now, "sample_rate": 24000,
            "speakers": {s["speaker_id"]: s["speaker"] for s in segments}, "segments": segments}


CASES = [(name, profile) for name, *_ in CORPUS for profile in PROFILES]


def _case(name: str) -> dict[str, Any]:
    _, turns, per_char, pause = next(c for c in CORPUS if c[0] == name)
    return caption_json(turns, per_char, pause)


def test_the_corpus_has_at_least_30_cases() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_every_limit_holds_and_every_word_appears_once(name: str, profile: str) -> None:
    data = _case(name)
    style = PROFILES[profile]
    laid = layout(data, style)
    cues = laid.cues
    impossible_words = {entry["word"] for entry in laid.impossible}

    # every word once, in order, and each cue's text is its words
    assert [w.text for cue in cues for w in cue.words] == [
        w["text"] for seg in data["segments"] for w in seg["words"]]
    for cue in cues:
        assert cue.text.split() == [w.text for w in cue.words]

    gap = style.min_gap_seconds
    for index, cue in enumerate(cues):
        first, last = cue.words[0], cue.words[-1]
        assert cue.start == first.start  # a cue shows with its first word
        assert cue.end > last.start and cue.end >= last.end - gap - 1e-9
        wide = [line for line in cue.lines if columns(line, style.width_aware)
                > style.max_chars_per_line]
        assert not wide or (len(cue.words) == 1 and cue.words[0].text in impossible_words), wide
        assert len(cue.lines) <= style.max_lines
        assert cue.seconds <= style.max_cue_seconds + 1e-9
        if len(cue.speakers) > 1:  # two turns: each on its own line after "- "
            assert style.dual_speaker and len(cue.lines) == 2
            assert all(line.startswith(DUAL_PREFIX) for line in cue.lines)
            assert cue.speaker_ids[0] != cue.speaker_ids[1]
        else:  # never two speakers in a cue otherwise
            segment = data["segments"][cue.segments[0]]
            assert {w.text for w in cue.words} <= {w["text"] for w in segment["words"]}
        if index + 1 < len(cues):
            assert cues[index + 1].start - cue.end >= gap - 1e-9
            assert cue.words[-1].end <= cues[index + 1].words[0].start  # order kept

    # the report counts exactly what the cues show
    report = quality_report(laid, style, profile)
    assert report["cues"] == len(cues)
    speeds = [cue.chars_per_second for cue in cues]
    assert report["max_chars_per_second"] == round(max(speeds), 2)
    over = [i for i, s in enumerate(speeds) if s > style.max_chars_per_second + 1e-6]
    assert [v["cue"] for v in report["violations"] if v["limit"] == "chars_per_second"] == over
    short = [i for i, c in enumerate(cues) if c.seconds < style.min_cue_seconds - 1e-6]
    assert [v["cue"] for v in report["violations"] if v["limit"] == "min_cue_seconds"] == short
    assert report["over_limits"]["chars_per_line"] == len(
        [c for c in cues if max(columns(line, style.width_aware) for line in c.lines)
         > style.max_chars_per_line])
    # a cue misses the reading speed only when its speech leaves no room: the next cue (or
    # the cue's own longest allowed time) comes first
    for index in over:
        cue = cues[index]
        room = min(cue.start + style.max_cue_seconds,
                   cues[index + 1].start - gap if index + 1 < len(cues) else float("inf"))
        assert cue.end >= room - 1e-6


def test_the_reading_speed_holds_at_a_normal_pace_on_netflix_en() -> None:
    for name in ("long line", "dialogue", "commas", "conjunctions", "monologue"):
        report = quality_report(layout(_case(name), PROFILES["netflix-en"]),
                                PROFILES["netflix-en"], "netflix-en")
        assert report["cues_within_limits"] == report["cues"], (name, report["violations"])


def test_cues_break_at_sentences_then_clauses_then_before_conjunctions() -> None:
    laid = layout(_case("long line"), PROFILES["netflix-en"])
    ends = [cue.words[-1].text for cue in laid.cues[:-1]]
    starts = [cue.words[0].text for cue in laid.cues[1:]]
    assert all(end.endswith((",", ".")) or start in ("and", "because", "with", "that", "of")
               for end, start in zip(ends, starts, strict=True)), (ends, starts)


def test_lines_are_balanced_and_bottom_heavy() -> None:
    sentence = "The quick brown fox jumps over the lazy dog near the bank of the river"
    words = sentence.split(" ")
    lines = break_lines(words, PROFILES["netflix-en"])
    assert lines is not None and len(lines) == 2
    assert len(lines[0]) <= len(lines[1]) and abs(len(lines[0]) - len(lines[1])) <= 12
    assert break_lines(["a" * 43], PROFILES["netflix-en"]) is None


def test_a_word_wider_than_a_line_is_reported_not_broken() -> None:
    laid = layout(_case("one very long word"), PROFILES["netflix-en"])
    assert laid.impossible == [{"segment": 0, "word": "a" * 60,
                                "reason": "the word is wider than 42 columns"}]
    assert ["a" * 60] in [cue.lines for cue in laid.cues]
    report = quality_report(laid, PROFILES["netflix-en"], "netflix-en")
    assert report["impossible"] == laid.impossible
    assert report["over_limits"]["chars_per_line"] == 1


def test_hangul_takes_two_columns_on_the_korean_profile() -> None:
    assert columns("회의는", True) == 6 and columns("회의는", False) == 3
    assert columns("KBS 뉴스", True) == 8
    laid = layout(_case("korean, long"), PROFILES["korean"])
    assert len(laid.cues) > 1
    for cue in laid.cues:
        assert all(columns(line, True) <= 32 for line in cue.lines)


def test_quick_turns_share_dual_speaker_cues_only_where_the_profile_allows() -> None:
    data = _case("quick turns")
    dual = layout(data, PROFILES["netflix-en"]).cues
    assert [cue.lines for cue in dual[:1]] == [["- Yes.", "- No."]]
    assert all(len(cue.speakers) == 2 for cue in dual)
    single = layout(data, PROFILES["bbc"]).cues
    assert all(len(cue.speakers) == 1 and len(cue.lines) == 1 for cue in single)
    apart = layout(_case("quick turns, long pauses"), PROFILES["netflix-en"]).cues
    assert all(len(cue.speakers) == 1 for cue in apart)


def test_short_cues_last_into_the_silence_after_them() -> None:
    style = PROFILES["netflix-en"]
    cue = layout(_case("one word"), style).cues[0]
    assert cue.seconds == pytest.approx(style.min_cue_seconds)
    chained = layout(_case("fast quick turns"), PROFILES["bbc"]).cues
    assert chained[1].start - chained[0].end == pytest.approx(style.min_gap_seconds)


def test_fit_pauses_lengthens_the_silence_until_every_cue_reads_in_time() -> None:
    style = PROFILES["bbc"]
    turns = [("A", "Absolutely, without any doubt whatsoever."), ("B", "Understood, then."),
             ("A", LONG)]
    data = caption_json(turns, 0.045, 0.05)
    before = quality_report(layout(data, style), style, "bbc")
    assert before["over_limits"]["chars_per_second"] > 0
    added = extra_pauses(data, style)
    assert {i.before_word is None for i in added} == {True, False}  # after turns and inside
    assert all(i.seconds > 0 for i in added)
    refit = apply_insertions(data, added)
    assert refit["duration"] == pytest.approx(data["duration"] + sum(i.seconds for i in added))
    # speech is never stretched: every word keeps its length
    lengths = [round(w["end"] - w["start"], 6) for s in data["segments"] for w in s["words"]]
    assert [round(w["end"] - w["start"], 6) for s in refit["segments"]
            for w in s["words"]] == lengths
    after = quality_report(layout(refit, style), style, "bbc")
    assert after["cues_within_limits"] == after["cues"], after["violations"]
    assert extra_pauses(refit, style) == []


def test_options_take_the_list_form_and_override_a_profile() -> None:
    assert CaptionOptions.model_validate(["srt", "vtt", "srt"]).formats == ["srt", "vtt"]
    options = CaptionOptions.model_validate({"formats": ["vtt"], "style": "bbc",
                                             "max_chars_per_line": 30})
    assert options.profile() == PROFILES["bbc"].model_copy(update={"max_chars_per_line": 30})
    assert CaptionOptions().profile() == CaptionStyle()
    assert json.loads(CaptionOptions().model_dump_json())["style"] == "netflix-en"
    with pytest.raises(ValueError):
        CaptionOptions.model_validate({"formats": ["docx"]})
    with pytest.raises(ValueError):
        CaptionOptions.model_validate({"style": "cinema"})


def test_every_profile_lays_out_its_own_limits() -> None:
    assert PROFILES["bbc"].max_chars_per_line == 37
    assert PROFILES["korean"].max_chars_per_line == 32 and PROFILES["korean"].width_aware
    assert PROFILES["netflix-en"].min_gap_seconds == pytest.approx(0.08)
    data = _case("monologue")
    widest = {name: max(len(line) for cue in layout(data, style).cues for line in cue.lines)
              for name, style in PROFILES.items()}
    assert widest["bbc"] <= 37 < widest["netflix-en"] <= 42
    longest = {name: max(cue.seconds for cue in layout(_case("long line, slow"), style).cues)
               for name, style in PROFILES.items()}
    assert longest["netflix-en"] <= 7 < longest["youtube"] <= 10


def test_layout_returns_a_layout_for_an_empty_script() -> None:
    assert layout({"segments": []}, CaptionStyle()) == Layout([])
