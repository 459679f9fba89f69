"""Text normalisation: spoken forms, the word map back to the original, span projection."""

from __future__ import annotations

import random

import pytest

from voicereel.domain.textnorm import Normalized, normalize, project_spans
from voicereel.errors import SynthesisFailed

CASES = [
    # cardinals
    ("0", "zero"),
    ("7", "seven"),
    ("42", "forty two"),
    ("1,234", "one thousand two hundred thirty four"),
    ("1000000", "one million"),
    ("-5", "minus five"),
    ("I have 13 cats.", "I have thirteen cats."),
    ("007", "zero zero seven"),
    ("1,000,001", "one million one"),
    # ordinals
    ("1st", "first"),
    ("2nd", "second"),
    ("3rd", "third"),
    ("21st", "twenty first"),
    ("100th", "one hundredth"),
    ("12th", "twelfth"),
    ("the 40th time", "the fortieth time"),
    # decimals
    ("3.14", "three point one four"),
    ("0.5", "zero point five"),
    ("-2.5", "minus two point five"),
    # currency
    ("$5", "five dollars"),
    ("$5.50", "five dollars fifty cents"),
    ("$1", "one dollar"),
    ("$0.99", "ninety nine cents"),
    ("$1.01", "one dollar one cent"),
    ("€20", "twenty euros"),
    ("£3.20", "three pounds twenty pence"),
    ("$1.5M", "one point five million dollars"),
    ("$2 million", "two million dollars"),
    ("$3bn", "three billion dollars"),
    ("$1,000", "one thousand dollars"),
    ("20€", "twenty euros"),
    ("It costs $5.", "It costs five dollars."),
    # percentages
    ("50%", "fifty percent"),
    ("12.5%", "twelve point five percent"),
    ("50 %", "fifty percent"),
    # years
    ("1999", "nineteen ninety nine"),
    ("2005", "two thousand five"),
    ("2010", "twenty ten"),
    ("1900", "nineteen hundred"),
    ("1905", "nineteen oh five"),
    ("In 2024, we grew.", "In twenty twenty four, we grew."),
    ("1500 people", "one thousand five hundred people"),
    ("since 1500 people", "since fifteen hundred people"),
    ("the 1990s", "the nineteen nineties"),
    ("the 80s", "the eighties"),
    # dates
    ("January 5, 2024", "January fifth, twenty twenty four"),
    ("5 January 2024", "the fifth of January twenty twenty four"),
    ("2024-01-05", "January fifth twenty twenty four"),
    ("1/5/2024", "January fifth twenty twenty four"),
    ("Jan. 5th", "January fifth"),
    ("Sept 30", "September thirtieth"),
    # times
    ("3:30 pm", "three thirty p m"),
    ("10:05", "ten oh five"),
    ("7am", "seven a m"),
    ("12:00", "twelve o'clock"),
    ("3:00 p.m.", "three p m."),
    ("at 7 p.m. we", "at seven p m we"),
    ("7:45PM", "seven forty five p m"),
    ("I am 5", "I am five"),
    # abbreviations
    ("Dr. Smith", "doctor Smith"),
    ("Mr. and Mrs. Jones", "mister and missus Jones"),
    ("Ms. Lee", "miz Lee"),
    ("St. Louis", "saint Louis"),
    ("Main St.", "Main street."),
    ("on Main St. today", "on Main street today"),
    ("Sunset Dr. is closed", "Sunset drive is closed"),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("cats vs. dogs", "cats versus dogs"),
    ("fruit, e.g., apples", "fruit, for example, apples"),
    ("i.e. this", "that is this"),
    ("John Smith Jr. said", "John Smith junior said"),
    ("No. 5", "number five"),
    ("No. I refuse", "No. I refuse"),
    ("approx. 10", "approximately ten"),
    # symbols
    ("Tom & Jerry", "Tom and Jerry"),
    ("R&D", "R and D"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("me @ home", "me at home"),
    ("#1", "number one"),
    # ranges, fractions, units, phones
    ("10-20", "ten to twenty"),
    ("1999-2005", "nineteen ninety nine to two thousand five"),
    ("$10-$20", "ten to twenty dollars"),
    ("10-20%", "ten to twenty percent"),
    ("1/2", "one half"),
    ("3/4", "three quarters"),
    ("5kg", "five kilograms"),
    ("1 km", "one kilometer"),
    ("555-123-4567", "five five five, one two three, four five six seven"),
    # things that must stay as written
    ("Don't stop, it's fine.", "Don't stop, it's fine."),
    ("a well-known fact", "a well-known fact"),
    ("Hello world!", "Hello world!"),
    ("Really?", "Really?"),
    ("ms Word", "ms Word"),
    # punctuation and odd tokens
    ("(5)", "(five)"),
    ("\u201c$5.\u201d", "\u201cfive dollars.\u201d"),
    ("Wait \u2014 what?", "Wait, what?"),
    ("Well ...", "Well..."),
    ("COVID-19", "COVID nineteen"),
    ("v2.0", "v two point zero"),
    ("john@example.com", "john at example dot com"),
    ("hi \U0001F600 there", "hi there"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_spoken_text(text: str, spoken: str) -> None:
    assert normalize(text).spoken_text == spoken


def test_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


def _check_invariants(n: Normalized, text: str) -> None:
    assert n.original_words == text.split()
    assert len(n.word_map) == len(n.original_words)
    position = 0
    for start, end in n.word_map:
        assert start == position and end >= start
        position = end
    assert position == len(n.spoken_words)
    # The engine splits the spoken text on whitespace: every token must survive that.
    assert n.spoken_text.split() == n.spoken_words


def test_word_map_for_currency() -> None:
    n = normalize("It costs $5 today.")
    assert n.original_words == ["It", "costs", "$5", "today."]
    assert n.spoken_words == ["It", "costs", "five", "dollars", "today."]
    assert n.word_map == [(0, 1), (1, 2), (2, 4), (4, 5)]


def test_word_map_for_scale_after_currency() -> None:
    n = normalize("$2 million.")
    assert n.word_map == [(0, 1), (1, 3)]
    assert n.spoken_words == ["two", "million", "dollars."]


def test_dropped_token_maps_to_empty_range() -> None:
    n = normalize("Wait \u2014 what?")
    assert n.word_map == [(0, 1), (1, 1), (1, 2)]


def test_project_spans_unions_spoken_tokens() -> None:
    n = normalize("It costs $5 today.")
    spans = [(0, 10), (12, 30), (31, 40), (42, 60), (65, 90)]
    assert project_spans(n, spans) == [(0, 10), (12, 30), (31, 60), (65, 90)]


def test_project_spans_empty_word_sits_at_end_of_previous() -> None:
    n = normalize("Wait \u2014 what \u2014")
    assert project_spans(n, [(0, 100), (150, 300)]) == [(0, 100), (100, 100), (150, 300),
                                                          (300, 300)]


def test_project_spans_leading_empty_word_sits_at_start_of_next() -> None:
    n = normalize("\u2014 \u2014 Go")
    assert n.word_map == [(0, 0), (0, 0), (0, 1)]
    assert project_spans(n, [(40, 90)]) == [(40, 40), (40, 40), (40, 90)]


def test_project_spans_with_nothing_spoken() -> None:
    assert project_spans(normalize("\U0001F600 ..."), []) == [(0, 0), (0, 0)]


def test_project_spans_refuses_a_count_mismatch() -> None:
    with pytest.raises(SynthesisFailed, match="2 word timings for 1 spoken"):
        project_spans(normalize("Hello"), [(0, 1), (1, 2)])


@pytest.mark.parametrize("lang", ["de", "fr-FR", "es", "zh", "", "eng"])
def test_other_languages_pass_through(lang: str) -> None:
    text = "Am 5. Mai 2024 kostet es $5 & mehr."
    n = normalize(text, lang)
    assert n.spoken_words == n.original_words == text.split()
    assert n.word_map == [(k, k + 1) for k in range(len(n.original_words))]


@pytest.mark.parametrize("lang", ["en", "en-US", "en-GB", "EN", "en_AU"])
def test_english_variants_normalise(lang: str) -> None:
    assert normalize("$5", lang).spoken_text == "five dollars"


@pytest.mark.parametrize("text", [text for text, _ in CASES])
def test_invariants_hold_for_cases(text: str) -> None:
    _check_invariants(normalize(text), text)


_FUZZ_ALPHABET = (
    "0123456789" * 4 + "$€£¥%&+@=#/:.,;-–—'\"()[]!?~<>°×_*^|\\ \t\n"
    + "abcdefghijklmnopqrstuvwxyzAJMSDNT" + "\u00e9\u00df\u0131"
    + "\u05e9\u05dc\u05d5\u05dd" + "\u0645\u0631\u062d\u0628\u0627\u0663\u0664"  # RTL
    + "\u4f60\u597d\u00b2\u2155\u0301\u200b\u200f\ufeff\u2028\u00a0"
    + "\U0001F600\U0001F44D\U0001F3FD\u200d\U0001F680"
)
_FUZZ_WORDS = ["$", "pm", "am", "Dr.", "St.", "No.", "Jan.", "May", "million", "kg", "ms",
               "e.g.,", "etc.", "1999", "12:00", "5th", "in", "http://x.y/z", "a@b.c", "—"]


def test_fuzz_never_raises_and_keeps_invariants() -> None:
    rng = random.Random(20240105)
    for _ in range(3000):
        tokens = []
        for _ in range(rng.randint(0, 8)):
            if rng.random() < 0.3:
                tokens.append(rng.choice(_FUZZ_WORDS))
            else:
                tokens.append("".join(rng.choice(_FUZZ_ALPHABET)
                                      for _ in range(rng.randint(1, 10))))
        text = rng.choice([" ", "  ", "\n"]).join(tokens)
        n = normalize(text)
        _check_invariants(n, text)
        spans = [(10 * k, 10 * k + 5) for k in range(len(n.spoken_words))]
        projected = project_spans(n, spans)
        assert len(projected) == len(n.original_words)
        assert all(start <= end for start, end in projected)
        assert [s for s, _ in projected] == sorted(s for s, _ in projected)


def test_long_digit_strings_are_read_digit_by_digit() -> None:
    n = normalize("9" * 5000)
    assert n.spoken_words == ["nine"] * 5000
