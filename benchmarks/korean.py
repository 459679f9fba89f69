"""Korean on the built-in engines, measured offline: piper (the English model reading espeak-ng's
Korean phonemes) against espeak (espeak-ng's own Korean voice).

For a fixed Korean text set (normalised by `domain/textnorm_ko`), each engine prints:

- seconds per syllable of the rendered speech (Hangul syllables of the spoken text), against
  natural read Korean (about 0.15 to 0.2 s per syllable, i.e. 5 to 7 syllables per second);
- phoneme coverage: the share of espeak-ng's Korean phonemes the engine can voice (piper: those
  in the model's phoneme map; espeak voices its own inventory);
- words timed: the share of words with a span of their own (non-zero length);
- real-time factor: render seconds over audio seconds;
- speaker match after adaptation, for the two demo voices (references made from the bundled
  voice moved in pitch, `demo.VOICES`): median F0 error in semitones against the reference,
  unadapted and adapted, and, with the `eval` extra installed, the resemblyzer cosine
  similarity to the reference, unadapted and adapted.

    .venv/bin/python benchmarks/korean.py
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soundfile as sf

from voicereel.demo import REFERENCE_TRANSCRIPT, VOICES, make_reference
from voicereel.domain.textnorm import normalize
from voicereel.engines import adapt
from voicereel.engines.base import Voice
from voicereel.engines.espeak import EspeakEngine, speak, word_spans
from voicereel.engines.piper import PiperEngine
from voicereel.settings import Settings

TEXTS = [
    "오늘 회의는 3시 30분에 시작합니다.",
    "가격은 15,000원입니다.",
    "2026년 12월 2일에 만나요.",
    "사과 3개와 배 2개를 샀어요.",
    "저는 21살이고 서울에 살아요.",
    "제3회 대회는 부산에서 열립니다.",
    "기온은 영하 5℃까지 내려간답니다.",
    "KBS 뉴스를 보셨나요?",
    "회의실은 3층 오른쪽 끝에 있습니다.",
    "이 길로 2.5km 더 가면 바다가 보여요.",
    "다음 주에 다시 연락드리겠습니다.",
    "정말 고맙습니다. 좋은 하루 보내세요!",
]
NATURAL_SECONDS_PER_SYLLABLE = (0.15, 0.2)


def syllables(text: str) -> int:
    return sum(1 for c in text if "\uac00" <= c <= "\ud7a3")


def semitones(a_hz: float, b_hz: float) -> float:
    return 12 * math.log2(a_hz / b_hz)


def median_f0(audio: np.ndarray, rate: int) -> float:
    x = adapt._to_analysis_rate(audio, rate)
    f0, _ = adapt.track_f0(x, adapt.ANALYSIS_RATE)
    return float(np.median(f0[f0 > 0]))


def embedder() -> Callable[[np.ndarray, int], np.ndarray] | None:
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError:
        return None
    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(audio: np.ndarray, rate: int) -> np.ndarray:
        return np.asarray(encoder.embed_utterance(preprocess_wav(audio, source_sr=rate)))

    return embed


def piper_coverage(engine: PiperEngine) -> tuple[int, int, set[str]]:
    from piper.phonemize_espeak import EspeakPhonemizer

    model = engine._model()
    phonemizer = EspeakPhonemizer()
    known = model.config.phoneme_id_map
    total = missing = 0
    absent: set[str] = set()
    for text in TEXTS:
        for sentence in phonemizer.phonemize("ko", normalize(text, "ko").spoken_text):
            for phoneme in sentence:
                if phoneme == " ":
                    continue
                total += 1
                if phoneme not in known:
                    missing += 1
                    absent.add(phoneme)
    return total, missing, absent


def measure(name: str, render: Callable[[str, Voice | None], tuple[np.ndarray, int, list[Any]]],
            references: dict[str, tuple[np.ndarray, int, Voice]],
            embed: Callable[[np.ndarray, int], np.ndarray] | None) -> dict[str, Any]:
    audio_seconds = render_seconds = 0.0
    syllable_count = timed = words = 0
    for text in TEXTS:
        spoken = normalize(text, "ko").spoken_text
        started = time.perf_counter()
        audio, rate, spans = render(spoken, None)
        render_seconds += time.perf_counter() - started
        audio_seconds += len(audio) / rate
        syllable_count += syllables(spoken)
        words += len(spans)
        timed += sum(1 for span in spans if span.end > span.start)
    result: dict[str, Any] = {
        "engine": name, "seconds_per_syllable": audio_seconds / syllable_count,
        "words_timed": timed / words, "rtf": render_seconds / audio_seconds}
    line = " ".join(normalize(t, "ko").spoken_text for t in TEXTS[:6])
    for speaker, (ref_audio, ref_rate, voice) in references.items():
        ref_f0 = median_f0(ref_audio, ref_rate)
        base, base_rate, _ = render(line, None)
        adapted, adapted_rate, _ = render(line, voice)
        result[f"{speaker}_f0_error_unadapted"] = semitones(median_f0(base, base_rate), ref_f0)
        result[f"{speaker}_f0_error_adapted"] = semitones(
            median_f0(adapted, adapted_rate), ref_f0)
        if embed is not None:
            target = embed(ref_audio, ref_rate)

            def cosine(a: np.ndarray, rate: int, target: np.ndarray = target) -> float:
                e = embed(a, rate)
                return float(np.dot(e, target) / (np.linalg.norm(e) * np.linalg.norm(target)))

            result[f"{speaker}_similarity_unadapted"] = cosine(base, base_rate)
            result[f"{speaker}_similarity_adapted"] = cosine(adapted, adapted_rate)
    return result


def main() -> None:
    settings = Settings(piper_seed=0)
    piper = PiperEngine(settings)
    espeak = EspeakEngine(settings)
    espeak.warm_up()
    embed = embedder()

    def references_for(engine: Any) -> dict[str, tuple[np.ndarray, int, Voice]]:
        out = {}
        for speaker, (pitch, tempo) in VOICES.items():
            audio, rate = sf.read(io.BytesIO(make_reference(pitch, tempo)), dtype="float32")
            profile = engine.analyse_reference(audio, rate, REFERENCE_TRANSCRIPT, "en")
            out[speaker] = (audio, int(rate), Voice(f"spk_{speaker}", speaker, "ko", "",
                                                    profile=profile))
        return out

    def piper_render(text: str, voice: Voice | None) -> tuple[np.ndarray, int, list[Any]]:
        if voice is None:
            audio, spans = piper.render_base(text, seed=0, lang="ko")
            return audio, piper.sample_rate, spans
        out = piper.synthesize(text, voice, seed=0)
        return out.audio, out.sample_rate, out.words

    def espeak_render(text: str, voice: Voice | None) -> tuple[np.ndarray, int, list[Any]]:
        if voice is None:
            audio, rate, events = speak(text, "ko")
            return audio, rate, word_spans(text, events, len(audio))
        out = espeak.synthesize(text, voice)
        return out.audio, out.sample_rate, out.words

    total, missing, absent = piper_coverage(piper)
    results = [measure("piper (espeak-ng ko phonemes)", piper_render, references_for(piper),
                       embed),
               measure("espeak (espeak-ng ko voice)", espeak_render, references_for(espeak),
                       embed)]
    low, high = NATURAL_SECONDS_PER_SYLLABLE
    print(f"Korean text set: {len(TEXTS)} lines, "
          f"{sum(syllables(normalize(t, 'ko').spoken_text) for t in TEXTS)} spoken syllables")
    print(f"natural read Korean: about {low:.2f} to {high:.2f} s per syllable")
    print(f"piper phoneme coverage: {total - missing}/{total} espeak-ng Korean phonemes in the "
          f"model's map ({100 * (total - missing) / total:.1f} %)"
          + (f"; missing {sorted(absent)}" if absent else ""))
    print("espeak phoneme coverage: 100 % by construction (its own inventory)")
    for r in results:
        print(f"\n{r['engine']}")
        print(f"  seconds per syllable  {r['seconds_per_syllable']:.3f}")
        print(f"  words timed           {100 * r['words_timed']:.1f} %")
        print(f"  real-time factor      {r['rtf']:.3f} (unadapted renders)")
        for speaker in VOICES:
            print(f"  {speaker}: F0 error {r[f'{speaker}_f0_error_unadapted']:+.1f} st "
                  f"unadapted -> {r[f'{speaker}_f0_error_adapted']:+.1f} st adapted", end="")
            if f"{speaker}_similarity_adapted" in r:
                print(f"; resemblyzer cosine {r[f'{speaker}_similarity_unadapted']:.3f} -> "
                      f"{r[f'{speaker}_similarity_adapted']:.3f}", end="")
            print()
    if embed is None:
        print("\n(speaker embeddings skipped: install the eval extra for resemblyzer)")
    ratio = results[1]["seconds_per_syllable"] / results[0]["seconds_per_syllable"]
    print(f"\nespeak / piper seconds per syllable: {ratio:.2f}; "
          f"espeak / piper real-time factor: {results[1]['rtf'] / results[0]['rtf']:.2f}")
    errors = [abs(r[f"{s}_f0_error_adapted"]) for r in results for s in VOICES]
    print(f"median of both engines' adapted F0 errors: {statistics.median(errors):.1f} st")


if __name__ == "__main__":
    main()
