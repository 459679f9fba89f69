"""Pronunciation lexicons: a tenant's rules for words an engine reads wrong (brand and
character names), applied to the spoken words after normalisation.

A rule matches one whole word (the punctuation around it stays), by default ignoring case
(`case_sensitive` makes it exact). An `alias` replaces the word with other words ("VoiceReel"
-> "voice reel"); a `phoneme` (IPA) is given, on engines that take phonemes, as the phonemes
themselves (`[[ˈvɔɪs.ɹiːl]]`, piper's raw-phoneme syntax); on the others a rule with only a
phoneme does nothing and one with both uses its alias. Captions keep the customer's words;
`spoken` shows what the engine was given.

Lexicons move in and out as W3C PLS 1.0 (`application/pls+xml`), the format Polly and
ElevenLabs import: `<lexeme>` with one or more `<grapheme>` and an `<alias>` or `<phoneme>`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voicereel.domain.languages import canonical_tag, primary
from voicereel.domain.textnorm import Normalized

PLS_MEDIA_TYPE = "application/pls+xml"
PLS_NS = "http://www.w3.org/2005/01/pronunciation-lexicon"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MAX_LEXICONS_PER_REQUEST = 3
_EDGE = ".,!?;:…\"'()[]«»“”‘’"


class Rule(BaseModel):
    """One word and how to say it."""

    model_config = ConfigDict(extra="forbid")

    grapheme: str = Field(min_length=1, max_length=100, description="one word as written")
    alias: str | None = Field(None, min_length=1, max_length=200)
    phoneme: str | None = Field(None, min_length=1, max_length=200, description="IPA")
    case_sensitive: bool = False

    @field_validator("grapheme")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if len(value.split()) != 1:
            raise ValueError("a grapheme is one word (no spaces)")
        return value.strip()

    @model_validator(mode="after")
    def _says_something(self) -> Rule:
        if self.alias is None and self.phoneme is None:
            raise ValueError("a rule needs an alias or a phoneme")
        return self


class LexiconIn(BaseModel):
    """Body of `POST /v1/lexicons` and `PUT /v1/lexicons/{id}` (JSON)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    lang: str = Field(min_length=2, max_length=35)
    rules: list[Rule] = Field(default_factory=list, max_length=5000)

    @field_validator("lang")
    @classmethod
    def _known_language(cls, value: str) -> str:
        return canonical_tag(value)


@dataclass(frozen=True)
class Lexicon:
    """A stored lexicon, as the pipeline applies it."""

    id: str
    lang: str
    rules: list[Rule]


def from_row(lexicon_id: str, lang: str, rules: dict[str, object]) -> Lexicon:
    """A stored lexicon (`rules` as `operations` stores them: {"rules": [...]})."""
    listed = rules.get("rules", [])
    return Lexicon(lexicon_id, lang, [Rule.model_validate(rule)
                                      for rule in (listed if isinstance(listed, list) else [])])


def apply(normalized: Normalized, lexicons: list[Lexicon], lang: str,
          takes_phonemes: bool) -> Normalized:
    """`normalized` with each spoken word that a rule of a lexicon of `lang` matches replaced;
    the first lexicon listed wins. Original words and the word map stay consistent."""
    exact: dict[str, Rule] = {}
    folded: dict[str, Rule] = {}
    for lexicon in reversed([x for x in lexicons if primary(x.lang) == primary(lang)]):
        for rule in lexicon.rules:
            if rule.case_sensitive:
                exact[rule.grapheme] = rule
            else:
                folded[rule.grapheme.casefold()] = rule
    if not exact and not folded:
        return normalized
    spoken: list[str] = []
    word_map: list[tuple[int, int]] = []
    for start, end in normalized.word_map:
        begin = len(spoken)
        for token in normalized.spoken_words[start:end]:
            spoken += _say(token, exact, folded, takes_phonemes)
        word_map.append((begin, len(spoken)))
    return Normalized(list(normalized.original_words), spoken, word_map)


def _say(token: str, exact: dict[str, Rule], folded: dict[str, Rule],
         takes_phonemes: bool) -> list[str]:
    core = token.strip(_EDGE)
    if not core:
        return [token]
    rule = exact.get(core) or folded.get(core.casefold())
    if rule is None:
        return [token]
    lead, trail = token[: token.index(core)], token[token.index(core) + len(core):]
    if takes_phonemes and rule.phoneme:
        words = [f"[[{''.join(rule.phoneme.split())}]]"]
    elif rule.alias:
        words = rule.alias.split()
    else:
        return [token]
    words[0] = lead + words[0]
    words[-1] += trail
    return words


# --- W3C PLS 1.0 ----------------------------------------------------------------------------


def from_pls(data: bytes, name: str) -> LexiconIn:
    """A lexicon from a PLS document; ValueError when it is not one. The document's xml:lang
    is the lexicon's language; every grapheme of a lexeme gets the lexeme's first alias or
    phoneme."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError("a PLS document must not declare a DOCTYPE or entities")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    if root.tag != f"{{{PLS_NS}}}lexicon":
        raise ValueError(f"the root element must be <lexicon xmlns=\"{PLS_NS}\">")
    alphabet = root.get("alphabet", "ipa").lower()
    rules: list[Rule] = []
    for lexeme in root.iter(f"{{{PLS_NS}}}lexeme"):
        graphemes = [g.text.strip() for g in lexeme.iter(f"{{{PLS_NS}}}grapheme")
                     if g.text and g.text.strip()]
        alias = next((a.text.strip() for a in lexeme.iter(f"{{{PLS_NS}}}alias")
                      if a.text and a.text.strip()), None)
        phoneme_element = next((p for p in lexeme.iter(f"{{{PLS_NS}}}phoneme")
                                if p.text and p.text.strip()), None)
        phoneme = None
        if phoneme_element is not None and phoneme_element.get(
                "alphabet", alphabet).lower() == "ipa":
            phoneme = (phoneme_element.text or "").strip()
        if alias is None and phoneme is None:
            continue  # another alphabet only (x-sampa): nothing we can give an engine
        rules += [Rule(grapheme=g, alias=alias, phoneme=phoneme, case_sensitive=True)
                  for g in graphemes]
    lang = root.get(_XML_LANG)
    if not lang:
        raise ValueError("the <lexicon> element needs xml:lang")
    return LexiconIn(name=name, lang=lang, rules=rules)


def to_pls(lang: str, rules: list[Rule]) -> bytes:
    """A PLS 1.0 document of the rules (IPA alphabet)."""
    ET.register_namespace("", PLS_NS)
    root = ET.Element(f"{{{PLS_NS}}}lexicon", {"version": "1.0", "alphabet": "ipa",
                                              _XML_LANG: lang})
    for rule in rules:
        lexeme = ET.SubElement(root, f"{{{PLS_NS}}}lexeme")
        ET.SubElement(lexeme, f"{{{PLS_NS}}}grapheme").text = rule.grapheme
        if rule.phoneme:
            ET.SubElement(lexeme, f"{{{PLS_NS}}}phoneme").text = rule.phoneme
        if rule.alias:
            ET.SubElement(lexeme, f"{{{PLS_NS}}}alias").text = rule.alias
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()
