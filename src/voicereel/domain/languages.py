"""Language tags as data: which BCP 47 tags are known, and how each language is normalised.

A tag is known when it is well formed (RFC 5646: a primary subtag, optional script, region and
variants) and its primary subtag is one of `LANGUAGES`. Engines say which languages they speak
(`engines.registry.engine_languages`); this module only knows languages, not engines.
"""

from __future__ import annotations

import re
from typing import Literal

Quality = Literal["native", "fallback"]
"""How well an engine speaks a language: `native`, with a model made for it; `fallback`,
intelligible but robotic or accented (a formant synthesiser, or another language's voice)."""

# ISO 639-1 languages (plus the ISO 639-3 tags espeak-ng and fish-speech use for Chinese).
LANGUAGES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan",
    "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fil": "Filipino", "fr": "French", "ga": "Irish",
    "gl": "Galician", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian",
    "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian", "is": "Icelandic",
    "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer",
    "kn": "Kannada", "ko": "Korean", "ky": "Kyrgyz", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi",
    "ms": "Malay", "mt": "Maltese", "my": "Burmese", "nb": "Norwegian Bokmål", "ne": "Nepali",
    "nl": "Dutch", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian",
    "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian",
    "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "yue": "Cantonese", "zh": "Chinese",
    "cmn": "Mandarin Chinese", "zu": "Zulu",
}

# What `domain.textnorm.normalize` does per language; every other language passes through.
NORMALISED = {
    "en": "numbers, dates, times, currency, units and abbreviations read out in English",
    "ko": "numbers read by their counter (Sino-Korean or native), dates, times, currency, "
          "units and Latin acronyms in Hangul",
}
PASSTHROUGH = "none: the text is given to the engine as written"

# language-extlang-script-region-variant (RFC 5646 section 2.1, without private use and
# extensions, which a speaker's language has no use for)
_TAG = re.compile(r"^(?P<language>[a-z]{2,3})(?:-(?P<extlang>[a-z]{3}))?"
                  r"(?:-(?P<script>[a-z]{4}))?(?:-(?P<region>[a-z]{2}|\d{3}))?"
                  r"(?:-(?:[a-z\d]{5,8}|\d[a-z\d]{3}))*$")


def canonical_tag(tag: str) -> str:
    """`tag` in its canonical case (ko-kr -> ko-KR, zh-hant-tw -> zh-Hant-TW); ValueError when
    it is not a well-formed BCP 47 tag of a known language."""
    cleaned = tag.strip().replace("_", "-")
    match = _TAG.match(cleaned.lower())
    if match is None:
        raise ValueError(f"{tag!r} is not a BCP 47 language tag like en, ko or pt-BR")
    if match["language"] not in LANGUAGES:
        raise ValueError(f"{match['language']!r} is not a known language (GET /v1/languages "
                         f"lists the languages the engines speak)")
    parts = cleaned.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


def primary(tag: str) -> str:
    """The primary language subtag: ko-KR -> ko; cmn (Mandarin) -> zh."""
    language = re.split(r"[-_]", (tag or "").strip(), maxsplit=1)[0].lower()
    return "zh" if language == "cmn" else language


def normalisation(tag: str) -> str:
    """What normalisation does to text of language `tag`."""
    return NORMALISED.get(primary(tag), PASSTHROUGH)
