"""Engine seam: `make_engine(settings)` picks the implementation named by VOICEREEL_ENGINE, and
`engine_languages()` says which languages each engine speaks and how well."""

from __future__ import annotations

from typing import Any

from voicereel.domain.languages import Quality, primary
from voicereel.engines.base import Engine
from voicereel.errors import LanguageUnsupported
from voicereel.settings import Settings

# Every engine's name; any of them is accepted as a model name and renders with the configured one.
ENGINE_NAMES = ("piper", "fish-speech", "espeak")


def _engine_class(name: str) -> Any:  # a class with `languages`, building an Engine
    if name == "fish-speech":
        from voicereel.engines.fish_speech import FishSpeechEngine

        return FishSpeechEngine
    if name == "espeak":
        from voicereel.engines.espeak import EspeakEngine

        return EspeakEngine
    from voicereel.engines.piper import PiperEngine

    return PiperEngine


def make_engine(settings: Settings, name: str | None = None) -> Engine:
    """The engine `name` (default: the configured one)."""
    engine: Engine = _engine_class(name or settings.engine)(settings)
    return engine


def engine_languages() -> dict[str, dict[str, Quality]]:
    """For each engine, the primary language subtags it speaks and how well (its declaration)."""
    return {name: dict(_engine_class(name).languages) for name in ENGINE_NAMES}


def engines_speaking(lang: str) -> list[str]:
    """The engines that speak `lang`, native ones first."""
    spoken = {name: table[primary(lang)] for name, table in engine_languages().items()
              if primary(lang) in table}
    return sorted(spoken, key=lambda name: (spoken[name] != "native", ENGINE_NAMES.index(name)))


def engine_for(settings: Settings, lang: str) -> str | None:
    """The engine that renders a line in `lang`: the configured one when it speaks it, else the
    configured fallback engine when that one does (None: neither)."""
    speakers = engines_speaking(lang)
    if settings.engine in speakers:
        return settings.engine
    fallback = settings.language_fallback_engine
    return fallback if fallback and fallback in speakers else None


def unsupported(settings: Settings, lang: str,
                errors: list[dict[str, object]] | None = None) -> LanguageUnsupported:
    """The 422 for lines in `lang`, naming the engines that speak it."""
    able = engines_speaking(lang)
    return LanguageUnsupported(
        f"the configured engine ({settings.engine}) does not speak {lang}; "
        + (f"engines that do: {', '.join(able)}" if able else "no engine does")
        + ("" if not able else "; configure one of them, or name one in "
           "VOICEREEL_LANGUAGE_FALLBACK_ENGINE"), errors=errors)


def language_report(settings: Settings) -> dict[str, object]:
    """`GET /v1/languages`: each engine's languages, how well it speaks them, and what
    normalisation does to their text; which engine is configured and which is the fallback."""
    from voicereel.domain.languages import LANGUAGES, normalisation

    engines = []
    for name, table in engine_languages().items():
        engines.append({
            "name": name, "configured": name == settings.engine,
            "fallback": name == settings.language_fallback_engine,
            "languages": [{"tag": tag, "name": LANGUAGES[tag], "quality": quality,
                           "normalisation": normalisation(tag)}
                          for tag, quality in sorted(table.items())]})
    spoken = sorted({tag for table in engine_languages().values() for tag in table
                     if engine_for(settings, tag) is not None})
    return {"engine": settings.engine,
            "fallback_engine": settings.language_fallback_engine or None,
            "engines": engines, "accepted": spoken}
