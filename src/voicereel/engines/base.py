"""The Engine seam: turns one line of text into audio with word timings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Voice:
    """What an engine knows about a speaker when it renders a line."""

    speaker_id: str
    name: str
    lang: str
    transcript: str
    profile: dict[str, Any] = field(default_factory=dict)
    """Whatever `Engine.analyse_reference` returned at registration."""
    load_reference: Callable[[], tuple[np.ndarray, int]] | None = None
    """Returns the decoded mono float32 reference and its sample rate."""


@dataclass(frozen=True)
class WordSpan:
    """Where one word sits in rendered audio, in samples (end exclusive)."""

    start: int
    end: int


@dataclass
class Rendered:
    """One rendered line: mono float32 audio in [-1, 1] and one span per input word."""

    audio: np.ndarray
    sample_rate: int
    words: list[WordSpan]
    """Exactly one span per whitespace-separated token of the text given to `synthesize`."""
    seed: int | None = None
    """The seed it was rendered with: the same text, voice, speed and seed render it again."""


@dataclass
class AudioChunk:
    """One consecutive piece of a line as `Engine.stream` renders it: mono float32 in [-1, 1]."""

    audio: np.ndarray
    sample_rate: int


class Engine(Protocol):
    """A text-to-speech engine. Implementations: `piper` (CPU, bundled) and `fish-speech`."""

    name: str
    takes_phonemes: bool
    """Whether raw IPA phonemes in the text (`[[...]]`, lexicon phoneme rules) are spoken."""

    def analyse_reference(
        self, audio: np.ndarray, sample_rate: int, transcript: str, lang: str
    ) -> dict[str, Any]:
        """Study a speaker's reference once at registration; the result is stored as JSON."""
        ...

    def synthesize(self, text: str, voice: Voice, *, speed: float = 1.0,
                   seed: int | None = None) -> Rendered:
        """Render `text` (already normalised for speech) in `voice`; with `seed`, as the
        engine rendered it with that seed before (None: the engine's own choice)."""
        ...

    def stream(self, text: str, voice: Voice, *, speed: float = 1.0,
               seed: int | None = None) -> Iterator[AudioChunk]:
        """Render `text` like `synthesize`, yielding audio as it is made (no word timings).

        The first chunk is the engine's quickest first sound; the chunks of one call, joined,
        are the whole line. Per-voice processing (adaptation, levelling) is applied to each
        chunk as it is yielded, so nothing waits for the line's end.
        """
        ...

    def warm_up(self) -> None:
        """Load models or open connections now rather than on the first line."""
        ...

    def ready(self) -> bool:
        """True when the engine can render now (model loaded, a server reachable)."""
        ...
