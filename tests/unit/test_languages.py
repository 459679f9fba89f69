"""Language tags, and the README's language table against what /v1/languages reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voicereel.domain.languages import LANGUAGES, NORMALISED, canonical_tag, normalisation
from voicereel.engines.registry import engine_for, engines_speaking, language_report
from voicereel.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE = re.compile(r"<!-- languages-table[^>]*-->\n(.*?)\n<!-- /languages-table -->", re.S)


@pytest.mark.parametrize(("tag", "canonical"), [
    ("ko", "ko"), ("KO-kr", "ko-KR"), ("ko_KR", "ko-KR"), ("zh-hant-tw", "zh-Hant-TW"),
    ("pt-BR", "pt-BR"), ("es-419", "es-419"), ("en-GB-oxendict", "en-GB-oxendict"),
    (" ja ", "ja"), ("cmn", "cmn")])
def test_known_tags_are_canonicalised(tag: str, canonical: str) -> None:
    assert canonical_tag(tag) == canonical


@pytest.mark.parametrize("tag", ["", "k", "korean", "xx", "ko--KR", "ko-", "en-GB-x",
                                 "qq-KR", "12"])
def test_unknown_or_malformed_tags_are_refused(tag: str) -> None:
    with pytest.raises(ValueError):
        canonical_tag(tag)


def test_normalisation_is_said_per_language() -> None:
    assert normalisation("ko-KR") == NORMALISED["ko"] and normalisation("EN") == NORMALISED["en"]
    assert normalisation("fr").startswith("none")


def test_the_engine_for_a_language_and_its_fallback() -> None:
    assert engines_speaking("ja") == ["fish-speech"]
    assert engines_speaking("ko-KR") == ["fish-speech", "piper", "espeak"]
    assert engine_for(Settings(), "ko") == "piper" and engine_for(Settings(), "fr") is None
    fallback = Settings(language_fallback_engine="espeak")
    assert engine_for(fallback, "fr") == "espeak" and engine_for(fallback, "ja") is None
    assert engine_for(fallback, "en") == "piper"


def test_the_readme_table_is_what_the_languages_route_reports() -> None:
    match = TABLE.search(README.read_text())
    assert match, "README.md lost its languages table"
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")]
                        for line in match.group(1).splitlines()]
    engines = header[2:-1]
    report = language_report(Settings())
    declared = {e["name"]: {lang["tag"]: lang["quality"] for lang in e["languages"]}  # type: ignore[index]
                for e in report["engines"]}  # type: ignore[attr-defined]
    assert sorted(engines) == sorted(declared)
    table = {}
    for row in rows:
        name, tag, *qualities, normalised = row
        tag = tag.strip("`")
        assert name == LANGUAGES[tag]
        assert (normalised != "none") == (tag in NORMALISED), row
        table[tag] = dict(zip(engines, qualities, strict=True))
    every = {tag for languages in declared.values() for tag in languages}
    assert set(table) == every
    for engine in engines:
        assert {tag: q for tag, q in ((t, table[t][engine]) for t in table) if q != "-"} == \
            declared[engine], engine
