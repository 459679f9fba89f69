"""Korean normalisation: numbers by their counter, dates, times, money, units, symbols,
acronyms and mixed lines; captions keep every eojeol."""

from __future__ import annotations

import pytest

from voicereel.domain.textnorm import normalize
from voicereel.domain.textnorm_ko import native, sino

CASES = [
    # native numbers before counters of things, people, age, hours, order
    ("3시", "세 시"), ("1시", "한 시"), ("2시", "두 시"), ("4시", "네 시"), ("12시", "열두 시"),
    ("3개", "세 개"), ("1개", "한 개"), ("20개", "스무 개"), ("25개", "스물다섯 개"),
    ("2명", "두 명"), ("11명", "열한 명"), ("99명", "아흔아홉 명"), ("100명", "백 명"),
    ("21살", "스물한 살"), ("30살", "서른 살"), ("45살", "마흔다섯 살"),
    ("3번째", "세 번째"), ("1번째", "첫 번째"), ("11번째", "열한 번째"), ("2시간", "두 시간"),
    ("5마리", "다섯 마리"),
    ("3권", "세 권"), ("2잔", "두 잔"), ("4대", "네 대"), ("6장", "여섯 장"),
    ("7가지", "일곱 가지"), ("8사람", "여덟 사람"), ("10병", "열 병"), ("3달", "세 달"),
    # Sino-Korean everywhere else
    ("30분", "삼십 분"), ("5분", "오 분"), ("45초", "사십오 초"), ("3개월", "삼 개월"),
    ("15,000원", "만 오천 원"), ("1,000원", "천 원"), ("10,000원", "만 원"),
    ("110,000원", "십일만 원"), ("1,000,000원", "백만 원"), ("2,500,000원", "이백오십만 원"),
    ("123,456,789원", "일억 이천삼백사십오만 육천칠백팔십구 원"), ("100,000,000원", "일억 원"),
    ("제3회", "제삼 회"), ("제1회", "제일 회"), ("제12회", "제십이 회"), ("3층", "삼 층"),
    ("101호", "백일 호"), ("1번", "일 번"), ("2학년", "이 학년"), ("3교시", "삼 교시"),
    ("5등", "오 등"), ("2인분", "이 인분"), ("30세", "삼십 세"), ("3주", "삼 주"),
    # dates
    ("2026년", "이천이십육 년"), ("1999년", "천구백구십구 년"), ("2000년", "이천 년"),
    ("12월", "십이 월"), ("1월", "일 월"), ("6월", "유월"), ("10월", "시월"), ("11월", "십일 월"),
    ("2일", "이 일"), ("31일", "삼십일 일"),
    ("2026년 12월 2일", "이천이십육 년 십이 월 이 일"), ("6월 6일", "유월 육 일"),
    # times
    ("3:30", "세 시 삼십 분"), ("12:00", "열두 시"), ("9:05", "아홉 시 오 분"),
    ("3:30에", "세 시 삼십 분에"), ("18:45", "십팔 시 사십오 분"),
    # decimals, percent, ranges
    ("3.5", "삼 점 오"), ("0.25", "영 점 이 오"), ("3.14", "삼 점 일 사"), ("50%", "오십 퍼센트"),
    ("12.5%", "십이 점 오 퍼센트"), ("100%", "백 퍼센트"), ("3~5", "삼에서 오"),
    ("3~5개", "세에서 다섯 개"), ("10~20명", "열에서 스무 명"), ("2~3일", "이에서 삼 일"),
    # money
    ("₩5,000", "오천 원"), ("$20", "이십 달러"), ("$1,500", "천오백 달러"), ("€30", "삼십 유로"),
    ("₩1,000,000", "백만 원"),
    # units and symbols
    ("25℃", "이십오 도"), ("10km", "십 킬로미터"), ("5kg", "오 킬로그램"),
    ("170cm", "백칠십 센티미터"), ("500ml", "오백 밀리리터"), ("2L", "이 리터"),
    ("100m", "백 미터"), ("300g", "삼백 그램"), ("64GB", "육십사 기가바이트"),
    # phone numbers, digit by digit
    ("010-1234-5678", "공일공 일이삼사 오육칠팔"), ("02-123-4567", "공이 일이삼 사오육칠"),
    # acronyms letter by letter, with particles
    ("KBS", "케이비에스"), ("KBS는", "케이비에스는"), ("MBC에서", "엠비씨에서"),
    ("AI", "에이아이"), ("USB를", "유에스비를"),
    # particles and punctuation stay with the eojeol
    ("3시에", "세 시에"), ("30분에", "삼십 분에"), ("15,000원입니다.", "만 오천 원입니다."),
    ("2명이", "두 명이"), ("5개요?", "다섯 개요?"), ("(3개)", "(세 개)"),
    ("\"21살\"", "\"스물한 살\""), ("2026년에는", "이천이십육 년에는"),
    # numbers alone and plain words
    ("7", "칠"), ("0", "영"), ("10", "십"), ("1000", "천"), ("10000", "만"),
    ("안녕하세요", "안녕하세요"), ("회의는", "회의는"), ("OK", "오케이"),
]


def test_there_are_more_than_80_cases() -> None:
    assert len(CASES) > 80


@pytest.mark.parametrize(("written", "spoken"), CASES)
def test_korean_is_read_as_a_korean_speaker_would(written: str, spoken: str) -> None:
    assert normalize(written, "ko").spoken_text == spoken


@pytest.mark.parametrize("line", [
    "오늘 회의는 3시 30분에 시작합니다. 가격은 15,000원입니다.",
    "KBS 뉴스는 오후 9시에 시작합니다, OK?",
    "제3회 대회는 2026년 12월 2일에 열리고, 참가비는 $20입니다.",
    "3~5명이 10km를 2시간 동안 걸었다.",
])
def test_every_eojeol_maps_to_its_spoken_words(line: str) -> None:
    normalized = normalize(line, "ko-KR")
    assert normalized.original_words == line.split()
    # the map tiles the spoken words in order, one run per eojeol
    ends = [end for _, end in normalized.word_map]
    assert [start for start, _ in normalized.word_map] == [0, *ends[:-1]]
    assert ends[-1] == len(normalized.spoken_words)
    for (start, end), word in zip(normalized.word_map, normalized.original_words, strict=True):
        assert end > start, word
        assert not any(c.isdigit() for c in " ".join(normalized.spoken_words[start:end]))


def test_the_whole_example_line_of_the_issue() -> None:
    line = "오늘 회의는 3시 30분에 시작합니다. 가격은 15,000원입니다."
    assert normalize(line, "ko").spoken_text == (
        "오늘 회의는 세 시 삼십 분에 시작합니다. 가격은 만 오천 원입니다.")


def test_number_words() -> None:
    assert [native(n) for n in (1, 2, 3, 4, 10, 20, 21, 99)] == [
        "한", "두", "세", "네", "열", "스무", "스물한", "아흔아홉"]
    assert sino(10_000) == "만" and sino(20_000) == "이만" and sino(100_000_000) == "일억"
    assert sino(1_0000_0000_0000) == "일조"


def test_english_lines_keep_english_rules() -> None:
    assert normalize("It is 3 pm.", "en").spoken_text == "It is three p m."
    assert normalize("3시", "ja").spoken_text == "3시"  # other languages pass through
