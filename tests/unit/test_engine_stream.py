"""`Engine.stream` on the real piper model and libespeak-ng: where the chunks are cut, and
that each chunk is processed as `synthesize` processes a line."""

from __future__ import annotations

import numpy as np
import pytest

from voicereel.engines import adapt
from voicereel.engines.base import Voice
from voicereel.engines.espeak import EspeakEngine
from voicereel.engines.piper import (
    PiperEngine,
    length_scale_for,
    level_chunk,
    sentence_chunks,
    stream_chunks,
)
from voicereel.settings import Settings

TEXT = "The old lighthouse stood at the edge of the cliff. Ships looked for its beam."
VOICE = Voice("spk_stream", "Stream", "en", "")


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    engine = PiperEngine(Settings())
    engine.warm_up()
    return engine


def test_the_first_chunk_is_short_and_the_rest_are_sentences() -> None:
    tokens = TEXT.split()
    assert stream_chunks(tokens, 2) == [(0, 2), (2, 10), (10, 15)]
    clause = ["Well,", "the", "lighthouse", "stood", "there.", "Then", "it", "fell."]
    assert stream_chunks(clause, 3) == [(0, 1), (1, 5), (5, 8)]  # the first clause is sooner
    short = ["Hi", "there.", "Bye", "now."]
    assert stream_chunks(short, 2) == sentence_chunks(short) == [(0, 2), (2, 4)]
    assert stream_chunks([], 2) == []


def test_piper_streams_each_chunk_adapted_and_levelled(piper: PiperEngine) -> None:
    chunks = list(piper.stream(TEXT, VOICE, seed=3))
    assert [c.sample_rate for c in chunks] == [piper.sample_rate] * 3
    # chunk k is the base voice reading its words with seed + k, transformed, levelled
    tokens = TEXT.split()
    profile = piper.profile_of(VOICE)
    base, _ = piper.render_base(" ".join(tokens[2:10]), length_scale_for(profile.rate),
                                seed=4)
    expected = level_chunk(adapt.transform(base, piper.sample_rate, profile), piper.sample_rate)
    assert len(chunks[1].audio) == len(expected)
    np.testing.assert_allclose(chunks[1].audio, expected, atol=1e-5)
    assert all(float(np.max(np.abs(c.audio))) <= 0.95 + 1e-6 for c in chunks)
    again = list(piper.stream(TEXT, VOICE, seed=3))
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(chunks, again, strict=True))


def test_espeak_streams_a_sentence_at_a_time() -> None:
    engine = EspeakEngine(Settings())
    chunks = list(engine.stream(TEXT, VOICE))
    assert len(chunks) == 2
    whole = engine.synthesize(TEXT, VOICE)
    assert all(c.sample_rate == whole.sample_rate for c in chunks)
    # each sentence spoken on its own: about the line's length (espeak's pause at the join)
    total = sum(len(c.audio) for c in chunks)
    assert 0.8 * len(whole.audio) < total < 1.2 * len(whole.audio)
    assert all(0.0 < float(np.max(np.abs(c.audio))) <= 0.95 + 1e-6 for c in chunks)
