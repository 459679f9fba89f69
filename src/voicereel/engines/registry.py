"""Engine seam: `make_engine(settings)` picks the implementation named by VOICEREEL_ENGINE."""

from __future__ import annotations

from voicereel.engines.base import Engine
from voicereel.settings import Settings

# Every engine's name; any of them is accepted as a model name and renders with the configured one.
ENGINE_NAMES = ("piper", "fish-speech")


def make_engine(settings: Settings) -> Engine:
    if settings.engine == "fish-speech":
        from voicereel.engines.fish_speech import FishSpeechEngine

        return FishSpeechEngine(settings)
    from voicereel.engines.piper import PiperEngine

    return PiperEngine(settings)
