"""Fixtures for unit tests: real synthetic speech from the bundled piper voice, made once."""

from __future__ import annotations

import numpy as np
import pytest

PIPER_RATE = 22050
GAP_SECONDS = 0.3

PARAGRAPH = (
    "The morning train left the station a little after seven, carrying commuters, students and "
    "a few tired travellers. Outside the windows, the fields were still covered in a thin layer "
    "of frost, and the sun had only just begun to climb above the hills. A woman near the door "
    "was reading a thick novel, turning the pages slowly, while a young man beside her typed "
    "quickly on his laptop. When the conductor walked through the carriage, he greeted everyone "
    "by name, as if he had known them for years. Nobody seemed to mind the delay at the bridge, "
    "because the view of the river was worth a few extra minutes. By the time the train reached "
    "the city, the frost had melted and the streets were already busy with delivery vans and "
    "cyclists. Most of the passengers hurried away, but the woman with the novel stayed in her "
    "seat until she had finished the chapter."
)


@pytest.fixture(scope="session")
def piper_sentences() -> list[np.ndarray]:
    """One float32 array per sentence of PARAGRAPH, spoken by the bundled piper voice.

    Rendered through the engine's seeded model, so every run measures the same samples.
    """
    from voicereel.engines.piper import PiperEngine
    from voicereel.settings import Settings

    voice = PiperEngine(Settings())._model()
    with voice.session.seeded(0):
        chunks = list(voice.synthesize(PARAGRAPH))
    assert all(c.sample_rate == PIPER_RATE for c in chunks)
    return [np.asarray(c.audio_float_array, dtype=np.float32) for c in chunks]


def join_with_gaps(parts: list[np.ndarray], gap_seconds: float, rate: int) -> np.ndarray:
    gap = np.zeros(int(round(gap_seconds * rate)), np.float32)
    out: list[np.ndarray] = []
    for p in parts:
        out += [p, gap]
    return np.concatenate(out[:-1])


@pytest.fixture(scope="session")
def speech(piper_sentences: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """About 45 s of speech at 22050 Hz: the sentences joined by 0.3 s of silence."""
    return join_with_gaps(piper_sentences, GAP_SECONDS, PIPER_RATE), PIPER_RATE
