"""Inline pause markup: splitting lines into pieces, stripping markers, refusing bad ones."""

from __future__ import annotations

import pytest

from voicereel.domain.markup import Piece, split_pauses, strip_markup
from voicereel.errors import ValidationFailed

MAX = 10_000


@pytest.mark.parametrize(("text", "pieces"), [
    ("Hello there.", [Piece("Hello there.", 0)]),
    ("Hello [pause:1.5s] there.", [Piece("Hello", 1500), Piece("there.", 0)]),
    ("Wait[pause:300ms]now", [Piece("Wait", 300), Piece("now", 0)]),
    ("One [pause:2s] two [pause:250ms] three", [Piece("One", 2000), Piece("two", 250),
                                                Piece("three", 0)]),
    ("Hello [ PAUSE : 2 S ] there", [Piece("Hello", 2000), Piece("there", 0)]),
    ("Hello [Pause:0.5s]", [Piece("Hello", 500)]),
    ("[pause:1s] Hello", [Piece("", 1000), Piece("Hello", 0)]),
    ("A [pause:1s] [pause:500ms] B", [Piece("A", 1500), Piece("B", 0)]),
    ("[pause:1s][pause:1s]", [Piece("", 2000)]),
    ("A [pause:0s] B", [Piece("A", 0), Piece("B", 0)]),
    ("", [Piece("", 0)]),
    ("  spaced   out  ", [Piece("spaced   out", 0)]),
    ("A [pause:10s] B", [Piece("A", 10_000), Piece("B", 0)]),
    ("not a [pauses] marker", [Piece("not a [pauses] marker", 0)]),
    ("[1] footnote", [Piece("[1] footnote", 0)]),
])
def test_split_pauses(text: str, pieces: list[Piece]) -> None:
    assert split_pauses(text, MAX) == pieces


@pytest.mark.parametrize(("text", "detail"), [
    ("Hello [pause:abc] there", "malformed pause marker '[pause:abc]'"),
    ("Hello [pause:2] there", "malformed"),
    ("Hello [pause] there", "malformed"),
    ("Hello [pause:-1s] there", "malformed"),
    ("Hello [pause:2min] there", "malformed"),
    ("Hello [pause:2s there", "malformed"),
    ("Hello [pause:2s [pause:1s] there", "malformed"),
    ("Hello [pause:11s] there", "at most 10000 ms"),
    ("Hello [pause:10001ms] there", "at most 10000 ms"),
    ("Hello [pause:" + "9" * 400 + "s]", "at most 10000 ms"),
    ("A [pause:6s] [pause:6s] B", "add up to 12000 ms"),
])
def test_split_pauses_refuses(text: str, detail: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        split_pauses(text, MAX)
    assert detail in info.value.detail
    assert info.value.status == 422


@pytest.mark.parametrize(("text", "stripped"), [
    ("Hello [pause:1.5s] there.", "Hello there."),
    ("Wait[pause:300ms]now", "Wait now"),
    ("[pause:1s] Hello [pause:2s]", "Hello"),
    ("Bad [pause:abc] marker", "Bad marker"),
    ("  untouched  text ", "  untouched  text "),
])
def test_strip_markup(text: str, stripped: str) -> None:
    assert strip_markup(text) == stripped
