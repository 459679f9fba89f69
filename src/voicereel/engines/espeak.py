"""The `espeak` engine: espeak-ng's own voices (libespeak-ng through ctypes), word timings
from its word events, adapted to each speaker's profile like piper (`adapt`).

A formant synthesiser: robotic, but it has a voice for Korean and many other languages and
needs nothing but Debian's `espeak-ng`. For development; production Korean is fish-speech.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from voicereel.domain.languages import Quality, primary
from voicereel.engines import adapt
from voicereel.engines.base import AudioChunk, Rendered, Voice, WordSpan
from voicereel.engines.piper import sentence_chunks
from voicereel.errors import ServiceUnavailable, SynthesisFailed
from voicereel.settings import Settings

# espeak-ng's voice for each language it is declared to speak (`espeak-ng --voices`).
VOICES = {"en": "en-us", "ko": "ko", "de": "de", "es": "es", "fr": "fr", "it": "it",
          "pt": "pt", "nl": "nl", "pl": "pl", "ru": "ru", "sv": "sv", "tr": "tr", "vi": "vi",
          "zh": "cmn"}
BASE_RATE_WPM = 175  # espeak-ng's default speaking rate
_RATE_RANGE = (80, 450)

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END, _EVENT_MSG_TERMINATED = 0, 1, 5, 6
_PARAM_RATE = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))

_BASE_READING = (
    "The old lighthouse stood at the edge of the cliff for more than a century. Every night its "
    "keeper climbed the narrow stairs and lit the great lamp. Ships far out at sea looked for "
    "its steady beam and turned away from the rocks.")


@dataclass
class WordEvent:
    """Where espeak-ng started a word: its character offset in the text and its sample."""

    char: int
    sample: int


class _Library:
    """libespeak-ng, initialised once per process (its state is global: one line at a time)."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    _loaded: ClassVar[tuple[int, Any, int] | None] = None  # pid, library, sample rate

    @classmethod
    def get(cls) -> tuple[Any, int]:
        if cls._loaded is None or cls._loaded[0] != os.getpid():  # a forked worker starts anew
            name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
            try:
                lib = ctypes.CDLL(name)
            except OSError as exc:
                raise ServiceUnavailable(
                    "the espeak engine needs libespeak-ng (Debian: apt-get install espeak-ng)"
                ) from exc
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                              ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
            lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                         ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                         ctypes.c_void_p, ctypes.c_void_p]
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                         _INITIALIZE_DONT_EXIT)
            if rate <= 0:
                raise ServiceUnavailable("espeak-ng did not initialise (no espeak-ng-data?)")
            cls._loaded = (os.getpid(), lib, int(rate))
        return cls._loaded[1], cls._loaded[2]


def speak(text: str, language: str, rate_wpm: int = BASE_RATE_WPM
          ) -> tuple[np.ndarray, int, list[WordEvent]]:
    """espeak-ng's reading of `text` in its voice for `language`: float32 audio, its sample
    rate, and the word events (character offsets are 0-based)."""
    voice = VOICES.get(primary(language))
    if voice is None:
        raise SynthesisFailed(f"the espeak engine has no voice for {language}")
    chunks: list[np.ndarray] = []
    events: list[WordEvent] = []
    samples = [0]

    def collect(wav: Any, count: int, event: Any) -> int:
        k = 0
        while event[k].type != _EVENT_LIST_TERMINATED:
            if event[k].type == _EVENT_WORD:
                # text_position counts characters from 1; audio_position is in ms
                events.append(WordEvent(event[k].text_position - 1,
                                        round(event[k].audio_position * sample_rate / 1000)))
            k += 1
        if count > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / 32768)
            samples[0] += count
        return 0

    callback = _CALLBACK(collect)
    with _Library.lock:
        lib, sample_rate = _Library.get()
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SynthesisFailed(f"espeak-ng has no voice {voice}")
        lib.espeak_SetParameter(_PARAM_RATE, int(np.clip(rate_wpm, *_RATE_RANGE)), 0)
        data = text.encode("utf-8") + b"\0"
        buffer = ctypes.create_string_buffer(data, len(data))
        status = lib.espeak_Synth(buffer, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                  None, None)
    if status != 0:
        raise SynthesisFailed(f"espeak-ng could not render the line (error {status})")
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio, sample_rate, events


def word_spans(text: str, events: list[WordEvent], total: int) -> list[WordSpan]:
    """One span per whitespace token of `text`, tiling the audio.

    A token starts at the first word event inside it. espeak-ng joins some short words into
    one ("만 오천"): a run of tokens without an event of their own shares the time of the timed
    token before it in proportion to their characters. Events that step back in the text (the
    end-of-clause event points at an earlier character) are ignored.
    """
    tokens = text.split()
    if not tokens:
        return []
    starts: list[int] = []
    position = 0
    for token in tokens:
        position = text.index(token, position)
        starts.append(position)
        position += len(token)
    first: list[int | None] = [None] * len(tokens)
    last_char = -1
    for event in events:
        if event.char < last_char:
            continue
        last_char = event.char
        owner = bisect.bisect_right(starts, event.char) - 1
        if owner >= 0 and first[owner] is None:
            first[owner] = min(max(event.sample, 0), total)
    first[0] = 0 if first[0] is None else first[0]
    bounds: list[tuple[int, int]] = []  # [start, end) token runs sharing one timed start
    run = 0
    for k in range(1, len(tokens) + 1):
        if k == len(tokens) or first[k] is not None:
            bounds.append((run, k))
            run = k
    spans: list[WordSpan] = []
    cursor = 0
    for index, (a, b) in enumerate(bounds):
        begin = max(cursor, first[a] or 0)
        finish = total if index == len(bounds) - 1 else max(begin, first[bounds[index + 1][0]] or 0)
        weights = [len(tokens[k]) for k in range(a, b)]
        edge = float(begin)
        for weight in weights:
            step = (finish - begin) * weight / sum(weights)
            spans.append(WordSpan(round(edge), round(edge + step)))
            edge += step
        cursor = finish
    return spans


class EspeakEngine:
    """espeak-ng's voices, each speaker's pitch, envelope and pace applied by `adapt`."""

    name = "espeak"
    takes_phonemes = False
    languages: ClassVar[dict[str, Quality]] = {lang: "fallback" for lang in VOICES}
    _base_stats: ClassVar[adapt.VoiceStats | None] = None
    _base_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = False

    def warm_up(self) -> None:
        _Library.get()
        self._ready = True

    def ready(self) -> bool:
        return self._ready

    def base_stats(self) -> adapt.VoiceStats:
        """espeak-ng's English voice's own pitch, envelope and pace, measured once."""
        with EspeakEngine._base_lock:
            if EspeakEngine._base_stats is None:
                audio, rate, _ = speak(_BASE_READING, "en")
                EspeakEngine._base_stats = adapt.analyse_voice(audio, rate, _BASE_READING)
            return EspeakEngine._base_stats

    def analyse_reference(self, audio: np.ndarray, sample_rate: int, transcript: str,
                          lang: str) -> dict[str, Any]:
        try:
            reference = adapt.analyse_voice(audio, sample_rate, transcript)
        except ValueError:
            return {}
        return adapt.profile_from(reference, self.base_stats()).to_json()

    def synthesize(self, text: str, voice: Voice, *, speed: float = 1.0,
                   seed: int | None = None) -> Rendered:
        """espeak-ng is deterministic: `seed` is kept but changes nothing."""
        profile = _profile(voice)
        audio, rate, events = speak(text, voice.lang,
                                    round(BASE_RATE_WPM * profile.rate * speed))
        spans = word_spans(text, events, len(audio))
        return Rendered(_adapted(audio, rate, profile), rate, spans,
                        seed=0 if seed is None else seed)

    def stream(self, text: str, voice: Voice, *, speed: float = 1.0,
               seed: int | None = None) -> Iterator[AudioChunk]:
        """A sentence at a time (piper's `sentence_chunks`), each adapted as `synthesize`
        adapts a line."""
        profile = _profile(voice)
        tokens = text.split()
        for start, end in sentence_chunks(tokens):
            audio, rate, _ = speak(" ".join(tokens[start:end]), voice.lang,
                                   round(BASE_RATE_WPM * profile.rate * speed))
            yield AudioChunk(_adapted(audio, rate, profile), rate)


def _profile(voice: Voice) -> adapt.Profile:
    return adapt.Profile.from_json(voice.profile) or adapt.fallback_profile(voice.speaker_id)


def _adapted(audio: np.ndarray, rate: int, profile: adapt.Profile) -> np.ndarray:
    """The speaker's pitch and envelope (espeak's rate already set the pace), under 0.95."""
    if len(audio):
        audio = adapt.transform(audio, rate, adapt.Profile(
            profile.f0_log_mean, profile.f0_log_std, profile.formant_scale, 1.0,
            profile.eq_db))
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0.95:
        audio = audio * (0.95 / peak)
    return np.asarray(audio, np.float32)
