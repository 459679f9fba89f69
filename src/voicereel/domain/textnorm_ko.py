"""Korean text normalisation: numbers read the way the counter after them asks, and what an
engine cannot read (digits, Latin acronyms, units, symbols) in Hangul.

Each eojeol (space-separated word) becomes one or more spoken words; captions keep the eojeol.

- Native Korean numbers (한, 두, 세, ... 스물한, up to 99) before counters of things, people,
  age, hours and order: 3시 -> 세 시, 2명 -> 두 명, 21살 -> 스물한 살, 3번째 -> 세 번째.
- Sino-Korean numbers everywhere else: 30분 -> 삼십 분, 15,000원 -> 만 오천 원, 제3회 -> 제삼 회,
  2026년 12월 2일 -> 이천이십육 년 십이 월 이 일 (6월 -> 유월, 10월 -> 시월).
- Times 3:30 -> 세 시 삼십 분; decimals 3.5 -> 삼 점 오; 50% -> 오십 퍼센트; ranges
  3~5 -> 삼에서 오 (3~5개 -> 세에서 다섯 개); phone numbers digit by digit (0 -> 공).
- Currency ₩ (원) and $ (달러); units km, kg, cm, mm, m, g, ml, L, ℃; Latin acronyms letter by
  letter (KBS -> 케이비에스); other Latin words are left for the engine.
"""

from __future__ import annotations

import re

DIGITS = ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
PHONE_DIGITS = ["공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
SMALL_UNITS = ["", "십", "백", "천"]
LARGE_UNITS = ["", "만", "억", "조", "경"]
NATIVE_ONES = ["", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉"]
NATIVE_TENS = ["", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"]
# Counters read with native numbers (below 100); every other counter takes Sino-Korean.
# 번 is left Sino-Korean: "1번 출구" (number one) is the common written use, not "한 번".
NATIVE_COUNTERS = ("번째", "시간", "사람", "마리", "가지", "시", "개", "명", "살", "권", "잔",
                   "병", "대", "장", "곳", "달", "척", "채", "그루", "송이", "켤레", "벌", "줄")
SINO_COUNTERS = ("년", "월", "일", "분", "초", "원", "회", "층", "호", "점", "도", "세", "주",
                 "등", "위", "인분", "퍼센트", "달러", "차", "편", "부", "번지", "번", "동",
                 "학년", "교시", "개월", "쪽")
UNITS = {"km": "킬로미터", "kg": "킬로그램", "cm": "센티미터", "mm": "밀리미터", "m": "미터",
         "g": "그램", "ml": "밀리리터", "mL": "밀리리터", "L": "리터", "l": "리터",
         "℃": "도", "°C": "도", "%": "퍼센트", "km/h": "킬로미터", "GB": "기가바이트",
         "MB": "메가바이트", "TB": "테라바이트"}
LETTERS = {"A": "에이", "B": "비", "C": "씨", "D": "디", "E": "이", "F": "에프", "G": "지",
           "H": "에이치", "I": "아이", "J": "제이", "K": "케이", "L": "엘", "M": "엠", "N": "엔",
           "O": "오", "P": "피", "Q": "큐", "R": "알", "S": "에스", "T": "티", "U": "유",
           "V": "브이", "W": "더블유", "X": "엑스", "Y": "와이", "Z": "지"}
MONTHS = {6: "유월", 10: "시월"}
CURRENCY_SIGNS = {"₩": "원", "$": "달러", "€": "유로", "£": "파운드", "¥": "엔"}

_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_PHONE = re.compile(r"^(0\d{1,2})-(\d{3,4})-(\d{4})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(\D*)$")
_TRAILING = ".,!?;:…\"')]」』"
_LEADING = "\"'([「『"


def sino(number: int) -> str:
    """A number in Sino-Korean: 15000 -> 만오천, 30 -> 삼십, 2026 -> 이천이십육."""
    if number == 0:
        return "영"
    groups: list[str] = []
    for position in range(len(LARGE_UNITS)):
        group = number // 10000 ** position % 10000
        if group == 0:
            continue
        words = ""
        for place in (3, 2, 1, 0):
            digit = group // 10 ** place % 10
            if digit == 0:
                continue
            # 일 is left out before 십, 백, 천 (십, 백, 천, not 일십) and before 만 alone
            words += ("" if digit == 1 and place > 0 else DIGITS[digit]) + SMALL_UNITS[place]
        if words == "일" and position == 1:
            words = ""
        groups.append(words + LARGE_UNITS[position])
        if number < 10000 ** (position + 1):
            break
    return " ".join(reversed(groups)).strip()


def native(number: int) -> str:
    """A number from 1 to 99 in native Korean as a counter takes it: 3 -> 세, 21 -> 스물한."""
    tens, ones = divmod(number, 10)
    if tens == 2 and ones == 0:
        return "스무"
    return NATIVE_TENS[tens] + NATIVE_ONES[ones]


def _value(text: str) -> int:
    return int(text.replace(",", ""))


def _counted(number_text: str, counter: str) -> str:
    """`number_text` before `counter` (which may be empty), read as that counter asks."""
    if "." in number_text:
        whole, frac = number_text.split(".", 1)
        spoken = sino(_value(whole)) + " 점 " + " ".join(DIGITS[int(d)] for d in frac)
        return spoken
    number = _value(number_text)
    if counter == "번째" and number == 1:
        return "첫"  # the first: 첫 번째, not 한 번째
    if counter in NATIVE_COUNTERS and 0 < number < 100:
        return native(number)
    return sino(number)


def _split_counter(rest: str) -> tuple[str, str]:
    """The counter (a known one, or a unit) at the start of `rest`, and what follows it."""
    for unit in sorted(UNITS, key=len, reverse=True):
        if rest.startswith(unit):
            return UNITS[unit], rest[len(unit):]
    for counter in sorted(NATIVE_COUNTERS + SINO_COUNTERS, key=len, reverse=True):
        if rest.startswith(counter):
            return counter, rest[len(counter):]
    return "", rest


def _number_phrase(number_text: str, rest: str) -> str:
    """A number with what is written after it in the same eojeol (counter, particle)."""
    counter, tail = _split_counter(rest)
    if counter == "월" and number_text.isdigit() and int(number_text) in MONTHS:
        return MONTHS[int(number_text)] + tail  # 6월 -> 유월, 10월 -> 시월
    if counter in UNITS.values():
        return f"{_counted(number_text, '')} {counter}{tail}"
    if counter:
        return f"{_counted(number_text, counter)} {counter}{tail}"
    return _counted(number_text, "") + tail


def _range(match: re.Match[str]) -> str:
    low, high, rest = match.group(1), match.group(2), match.group(3)
    counter, tail = _split_counter(rest)
    if counter:
        return f"{_counted(low, counter)}에서 {_number_phrase(high, rest)}"
    return f"{_counted(low, '')}에서 {_counted(high, '')}{tail}"


def _acronym(word: str) -> str:
    return "".join(LETTERS[c] for c in word)


def speak_eojeol(eojeol: str) -> str:
    """One eojeol as it is read aloud (words separated by spaces)."""
    lead = ""
    while eojeol and eojeol[0] in _LEADING:
        lead, eojeol = lead + eojeol[0], eojeol[1:]
    trail = ""
    while eojeol and eojeol[-1] in _TRAILING:  # a decimal point always has digits after it
        trail, eojeol = eojeol[-1] + trail, eojeol[:-1]
    return lead + _speak_core(eojeol) + trail


def _speak_core(core: str) -> str:
    if not core:
        return core
    if (phone := _PHONE.match(core)) is not None:
        return " ".join("".join(PHONE_DIGITS[int(d)] for d in part) for part in phone.groups())
    if (clock := _TIME.match(core)) is not None:
        hour, minute = int(clock.group(1)), int(clock.group(2))
        spoken = f"{native(hour) if 0 < hour < 13 else sino(hour)} 시"
        return spoken + (f" {sino(minute)} 분" if minute else "") + clock.group(3)
    if core[0] in CURRENCY_SIGNS and re.match(rf"^.(?:{_NUMBER})(?:\.\d+)?", core):
        match = re.match(rf"^(.)({_NUMBER}(?:\.\d+)?)(.*)$", core)
        assert match is not None
        sign, number, rest = match.groups()
        return f"{_counted(number, '')} {CURRENCY_SIGNS[sign]}{rest}"
    if (ranged := re.match(rf"^({_NUMBER})~({_NUMBER})(.*)$", core)) is not None:
        return _range(ranged)
    if (prefixed := re.match(rf"^제({_NUMBER})(.*)$", core)) is not None:
        counter, tail = _split_counter(prefixed.group(2))
        return f"제{sino(_value(prefixed.group(1)))} {counter}{tail}".rstrip()
    if (numeric := re.match(rf"^({_NUMBER}(?:\.\d+)?)(.*)$", core)) is not None:
        return _number_phrase(numeric.group(1), numeric.group(2))
    if (latin := re.match(r"^([A-Z]{2,6})(.*)$", core)) is not None and not re.match(
            r"^[a-z]", latin.group(2)):
        return _acronym(latin.group(1)) + latin.group(2)
    if (embedded := re.match(rf"^(\D+?)({_NUMBER})(.*)$", core)) is not None \
            and re.search(r"[가-힣]", embedded.group(1)):
        return f"{embedded.group(1)} {_number_phrase(embedded.group(2), embedded.group(3))}"
    return core


def normalize_words(words: list[str]) -> list[list[str]]:
    """Each eojeol's spoken words."""
    return [speak_eojeol(word).split() for word in words]
