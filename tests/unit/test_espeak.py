"""The espeak engine on the real libespeak-ng: every declared voice loads, and word spans."""

from __future__ import annotations

import pytest

from voicereel.engines.base import Voice
from voicereel.engines.espeak import VOICES, EspeakEngine, WordEvent, speak, word_spans


@pytest.mark.parametrize("lang", sorted(VOICES))
def test_every_declared_language_speaks(lang: str) -> None:
    audio, rate, events = speak("1 2 3", lang)
    assert rate == 22050 and len(audio) > rate // 10 and events


def test_spans_tile_the_audio_and_share_a_joined_words_time() -> None:
    text = "가격은 만 오천 원입니다."
    events = [WordEvent(0, 0), WordEvent(6, 400), WordEvent(9, 900), WordEvent(11, 1000),
              WordEvent(2, 1200)]  # 11: inside the last word; 2: a step back
    spans = word_spans(text, events, 1500)
    assert [(s.start, s.end) for s in spans] == [(0, 300), (300, 400), (400, 900),
                                                 (900, 1500)]


def test_a_korean_line_is_timed_word_by_word() -> None:
    engine = EspeakEngine.__new__(EspeakEngine)
    text = "오늘 회의는 세 시 삼십 분에 시작합니다."
    out = engine.synthesize(text, Voice("spk_1", "민지", "ko", ""), seed=None)
    assert len(out.words) == len(text.split())
    assert out.words[0].start == 0 and out.words[-1].end == len(out.audio)
    assert all(w.end > w.start for w in out.words)
    assert all(a.end == b.start for a, b in zip(out.words, out.words[1:], strict=False))


def test_korean_and_full_width_sentence_ends_split_long_lines() -> None:
    from voicereel.engines.piper import sentence_chunks

    korean = ["안녕하세요.", "오늘", "회의는", "세", "시에", "시작합니다!", "준비되셨나요?", "네"]
    assert sentence_chunks(korean) == [(0, 1), (1, 6), (6, 7), (7, 8)]
    full_width = ["会議は", "三時に", "始まります。", "準備は", "いいですか？", "はい、", "どうぞ"]
    assert sentence_chunks(full_width) == [(0, 3), (3, 5), (5, 7)]
