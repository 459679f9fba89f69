"""Sentence and clause ends shared by long-line chunking and cue breaking."""

from __future__ import annotations

import pytest

from voicereel.domain.caption_layout import PROFILES, layout
from voicereel.domain.sentences import ends_clause, ends_sentence
from voicereel.engines.piper import sentence_chunks

KOREAN_ENDS = ["시작합니다", "있습니까", "갑니까", "먹어요", "주세요", "그렇군요", "뭐요", "좋죠",
               "했다", "한다", "있다", "학생이다", "할까", "먹을까", "시작합니다”", "좋아요)"]
KOREAN_WORDS = ["오늘", "회의는", "나보다", "바다", "필요", "주요", "수요", "가니까", "비가", "다",
                "세", "3시에", "KBS", "요"]


@pytest.mark.parametrize("token", KOREAN_ENDS)
def test_korean_verb_endings_end_a_sentence(token: str) -> None:
    assert ends_sentence(token)


@pytest.mark.parametrize("token", KOREAN_WORDS)
def test_korean_words_that_look_alike_do_not(token: str) -> None:
    assert not ends_sentence(token)


@pytest.mark.parametrize("token", ["end.", "Why?", "stop!\"", "wait…", "終わり。", "本当？」",
                                   "(done.)"])
def test_punctuation_ends_a_sentence_in_every_script(token: str) -> None:
    assert ends_sentence(token)


@pytest.mark.parametrize("token", ["Mr.", "e.g.", "etc.", "word", "clause,", ""])
def test_abbreviations_and_plain_words_do_not(token: str) -> None:
    assert not ends_sentence(token)


def test_clause_marks_of_every_script() -> None:
    assert all(ends_clause(t) for t in ["first,", "then;", "list:", "はい、", "好，", "“quoted,”"])
    assert not any(ends_clause(t) for t in ["end.", "word", "나보다"])


def test_a_long_korean_line_without_full_stops_splits_at_its_verb_endings() -> None:
    line = ["오늘", "회의는", "세", "시에", "시작합니다", "다들", "준비되셨나요", "자료는", "제가",
            "보내", "드릴게요", "질문이", "있으면", "언제든지", "말씀해", "주세요"]
    assert sentence_chunks(line) == [(0, 5), (5, 7), (7, 11), (11, 16)]


def test_korean_cues_break_at_verb_endings() -> None:
    words = ["회의는", "세", "시에", "시작합니다", "자료는", "제가", "미리", "보내", "드릴게요",
             "질문이", "있으면", "언제든지", "말씀해", "주세요"]
    timed = [{"text": w, "start": k * 0.5, "end": k * 0.5 + 0.45} for k, w in enumerate(words)]
    captions = {"segments": [{"index": 0, "speaker": "지민", "speaker_id": "spk_1",
                              "words": timed}]}
    cues = layout(captions, PROFILES["korean"]).cues
    assert len(cues) > 1
    assert all(cue.words[-1].text in ("시작합니다", "드릴게요", "주세요") for cue in cues)
