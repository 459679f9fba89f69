"""Voice and caption quality of a whole job, against the acceptance thresholds of issue 3.

Registers three reference voices made offline by other engines (benchmarks/voices.py) with a
service running in this process (HTTP on a loopback port, inline runner), submits a
three-speaker dialogue `--takes` times (one job each), downloads every master and its JSON
captions, and measures over the lines of all takes:

- attribution: share of lines whose speaker embedding (resemblyzer) is closer to their own
  speaker's reference than to every other reference;
- similarity gain: mean cosine to the own reference, adapted minus unadapted (the same lines
  from the base voice, `PiperEngine.render_base`, rendered UNADAPTED_RENDERS times and averaged);
- WER (pocketsphinx + jiwer against the normalised text), adapted and unadapted (over all the
  unadapted renders);
- word start error: |caption word start - pocketsphinx forced-alignment word start|;
- integrated loudness (pyloudnorm) and true peak (4x oversampling) of each take's master;
- real-time factor: submit-to-succeeded seconds over the master's seconds, per take.
Loudness, peak and real-time factor are reported for the worst take.

piper's noise comes from a seed per line, which the engine draws from a sequence seeded by
--seed (VOICEREEL_PIPER_SEED); a job renders two lines at once, so which line gets which seed
may differ between two runs of one seed.

Needs the `eval` extra and espeak-ng:  pip install -e '.[eval]'; apt-get install espeak-ng

    .venv/bin/python benchmarks/quality.py [--cache DIR] [--seed N] [--takes N]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voices import READING, VOICES, reference_wav  # noqa: E402

from voicereel.demo import local_service  # noqa: E402
from voicereel.domain.textnorm import normalize  # noqa: E402
from voicereel.engines.base import Rendered  # noqa: E402
from voicereel.engines.piper import PiperEngine  # noqa: E402
from voicereel.settings import Settings  # noqa: E402

# (speaker, line): three speakers, eight lines each (fewer left one recognised word a large
# share of a speaker's WER), words all in pocketsphinx's dictionary.
DIALOGUE = [
    ("Aiko", "Good morning, everyone, and thank you for coming in so early today."),
    ("Kenji", "Happy to be here. I brought the numbers from last week."),
    ("Fergus", "Before we start, can someone open a window? It is very warm in here."),
    ("Aiko", "Of course. Kenji, how did the new shop do on its first weekend?"),
    ("Kenji", "We sold 412 coffees on Saturday and almost as many on Sunday."),
    ("Fergus", "That is far better than we expected for a new place."),
    ("Aiko", "It is. The weather helped, and the street market brought a lot of people past "
             "our door. I think we should plan for another busy weekend. Can we order more "
             "milk and more cups by Thursday?"),
    ("Kenji", "I will call the supplier this afternoon and ask for an early delivery."),
    ("Fergus", "What about staff? Two people told me they could work extra hours."),
    ("Aiko", "Good. Please write down their names and send me the list."),
    ("Kenji", "One more thing. The coffee machine made a strange noise on Sunday night."),
    ("Fergus", "I can look at it tomorrow morning before we open."),
    ("Aiko", "Thank you both. Let us meet again next Monday at nine."),
    ("Kenji", "See you then, and enjoy the rest of your day."),
    ("Fergus", "Wait, before you go, who is taking the keys home tonight?"),
    ("Aiko", "I can take them. I will be the first one here in the morning."),
    ("Kenji", "Then I will leave the money in the safe and lock the back door."),
    ("Fergus", "Good. I will turn off the lights and the music on my way out."),
    ("Aiko", "Do not forget to clean the tables near the front window."),
    ("Kenji", "They are already clean. I did them an hour ago."),
    ("Fergus", "You are both very quick. I think this place will do well."),
    ("Aiko", "I hope so. We worked hard for it, and the team has been great."),
    ("Kenji", "Let us keep it that way. Good night, everyone."),
    ("Fergus", "Good night. Drive home safely, the roads are wet after the rain."),
]

OUTPUT_RATE = 24_000
# piper draws new noise for every rendering: a single take moves WER by several points, so the
# dialogue is rendered TAKES times and the unadapted lines UNADAPTED_RENDERS times per take.
TAKES = 3
UNADAPTED_RENDERS = 2
EMBED_RATE = 16_000
THRESHOLDS = {
    "attribution": 0.95,
    "similarity_gain": 0.05,
    "wer_margin": 0.05,
    "timing_median_s": 0.060,
    "timing_p95_s": 0.150,
    "loudness_lu": 1.0,
    "true_peak_dbtp": -1.0,
    "rtf": 0.2,
}


@dataclass
class LineResult:
    speaker: str
    cosines: dict[str, float]
    unadapted_cosine: float
    hypothesis: str
    unadapted_hypotheses: list[str]
    reference_text: str
    timing_errors: list[float] = field(default_factory=list)

    @property
    def attributed(self) -> bool:
        own = self.cosines[self.speaker]
        return all(own > c for name, c in self.cosines.items() if name != self.speaker)


class EngineClock:
    """Seconds the job's lines spend inside `PiperEngine.synthesize`, summed over the line
    threads (wraps the class for this run)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        lock = threading.Lock()  # lines render on several threads at once
        original = PiperEngine.synthesize

        def timed(engine: PiperEngine, *args: Any, **kwargs: Any) -> Rendered:
            started = time.perf_counter()
            try:
                return original(engine, *args, **kwargs)
            finally:
                with lock:
                    self.seconds += time.perf_counter() - started

        PiperEngine.synthesize = timed  # type: ignore[method-assign,assignment]


class Meters:
    """The eval-extra tools, loaded once."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)
        # alignment mode sticks to a decoder, so recognition and alignment get one each
        self.recognizer = Decoder(samprate=EMBED_RATE, loglevel="FATAL")
        self.aligner = Decoder(samprate=EMBED_RATE, loglevel="FATAL")

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(to_rate(audio, rate, EMBED_RATE), EMBED_RATE)
        return np.asarray(self.encoder.embed_utterance(wav))

    def transcribe(self, audio: np.ndarray, rate: int) -> str:
        self.recognizer.start_utt()
        self.recognizer.process_raw(pcm16(audio, rate), full_utt=True)
        self.recognizer.end_utt()
        hyp = self.recognizer.hyp()
        return hyp.hypstr if hyp is not None else ""

    def align(self, audio: np.ndarray, rate: int, words: list[str]) -> list[float] | None:
        """Start second of each word by forced alignment, or None when alignment fails."""
        if not words or any(self.aligner.lookup_word(w) is None for w in words):
            return None
        self.aligner.set_align_text(" ".join(words))
        self.aligner.start_utt()
        self.aligner.process_raw(pcm16(audio, rate), full_utt=True)
        self.aligner.end_utt()
        if self.aligner.hyp() is None:
            return None
        starts = [seg.start_frame / 100 for seg in self.aligner.seg()
                  if not seg.word.startswith(("<", "["))]
        return starts if len(starts) == len(words) else None


def to_rate(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    g = math.gcd(rate, target)
    return signal.resample_poly(audio, target // g, rate // g).astype(np.float32)


def pcm16(audio: np.ndarray, rate: int) -> bytes:
    return (np.clip(to_rate(audio, rate, EMBED_RATE), -1, 1) * 32767).astype(np.int16).tobytes()


def asr_words(text: str) -> list[str]:
    """Lower-case words without punctuation, as pocketsphinx spells them."""
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()


def true_peak_dbtp(audio: np.ndarray) -> float:
    peak = float(np.max(np.abs(signal.resample_poly(audio, 4, 1))))
    return 20 * math.log10(max(peak, 1e-12))


@dataclass
class Take:
    """One rendering of the dialogue by the service: its master, captions and timing."""

    master: np.ndarray
    rate: int
    captions: dict[str, Any]
    job_seconds: float
    cpu_seconds: float
    engine_seconds: float

    @property
    def rtf(self) -> float:
        return self.job_seconds / self.captions["duration"]


def render_take(client: httpx.Client, request: dict[str, Any], clock: EngineClock) -> Take:
    """Submit the dialogue, wait for it and download the master and its JSON captions."""
    started, cpu_started, engine_started = time.perf_counter(), time.process_time(), clock.seconds
    response = client.post("/v1/synthesize", json=request)
    response.raise_for_status()
    job_url = response.headers["location"]
    for _ in range(6000):
        job = client.get(job_url).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.25)  # the service shares this process: polls cost it the GIL
    job_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    if job["status"] != "succeeded":
        raise SystemExit(f"the job {job['status']}: {job['error']}")
    master, rate = sf.read(io.BytesIO(client.get(job["result"]["audio"]["url"]).content),
                           dtype="float32")
    captions = client.get(job["result"]["captions"]["json"]["url"]).json()
    return Take(master, rate, captions, job_seconds, cpu_seconds, clock.seconds - engine_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "voicereel-quality-references")
    parser.add_argument("--seed", type=int, default=1,
                        help="seeds the sequence of piper's per-line seeds")
    parser.add_argument("--takes", type=int, default=TAKES,
                        help="jobs rendering the dialogue (each line's WER and attribution is "
                             "measured in every take)")
    args = parser.parse_args()
    os.environ["VOICEREEL_PIPER_SEED"] = str(args.seed)  # read by every Settings() below

    print(f"Rendering the reference voices (cached in {args.cache})...", flush=True)
    references = {v.name: reference_wav(v, args.cache) for v in VOICES}
    meters = Meters()
    ref_embeddings = {}
    for name, wav in references.items():
        audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
        ref_embeddings[name] = meters.embed(audio, rate)

    target_lufs = Settings().loudness_lufs
    clock = EngineClock()
    with local_service("quality") as client:
        ids = {}
        for name, wav in references.items():
            response = client.post("/v1/speakers",
                                   data={"name": name, "transcript": READING, "lang": "en"},
                                   files={"audio": (f"{name}.wav", wav, "audio/wav")})
            response.raise_for_status()
            ids[name] = response.json()["id"]
        request = {"script": [{"speaker_id": ids[name], "text": text} for name, text in DIALOGUE],
                   "output": {"format": "wav", "sample_rate": OUTPUT_RATE},
                   "captions": ["json"]}
        takes = []
        for number in range(1, args.takes + 1):
            print(f"Registered {len(ids)} speakers; rendering the dialogue, take {number} of "
                  f"{args.takes}...", flush=True)
            takes.append(render_take(client, request, clock))

    engine = PiperEngine(Settings())
    names_by_id = {v: k for k, v in ids.items()}
    results = []
    for take in takes:
        master, rate = take.master, take.rate
        for (speaker, text), segment in zip(DIALOGUE, take.captions["segments"], strict=True):
            assert names_by_id[segment["speaker_id"]] == speaker
            line_start = round(segment["start"] * rate)
            line = master[line_start:round(segment["end"] * rate)]
            emb = meters.embed(line, rate)
            norm = normalize(text, "en")
            bases = [engine.render_base(norm.spoken_text)[0] for _ in range(UNADAPTED_RENDERS)]
            result = LineResult(
                speaker=speaker,
                cosines={name: float(np.dot(emb, ref)) for name, ref in ref_embeddings.items()},
                unadapted_cosine=statistics.mean(
                    float(np.dot(meters.embed(base, engine.sample_rate), ref_embeddings[speaker]))
                    for base in bases),
                hypothesis=meters.transcribe(line, rate),
                unadapted_hypotheses=[meters.transcribe(base, engine.sample_rate)
                                      for base in bases],
                reference_text=" ".join(asr_words(norm.spoken_text)))
            spoken = asr_words(norm.spoken_text)
            aligned = meters.align(line, rate, spoken)
            if aligned is not None and len(spoken) == len(norm.spoken_words):
                for word, (first, _) in zip(segment["words"], norm.word_map, strict=True):
                    if first < len(aligned):
                        result.timing_errors.append(
                            abs(word["start"] - segment["start"] - aligned[first]))
            results.append(result)

    report(results, takes, target_lufs)


def unadapted_wer(results: list[LineResult]) -> float:
    """WER of the unadapted renders, all of them against their line's text."""
    import jiwer

    pairs = [(r.reference_text, hyp) for r in results for hyp in r.unadapted_hypotheses]
    return float(jiwer.wer([ref for ref, _ in pairs], [hyp for _, hyp in pairs]))


def report(results: list[LineResult], takes: list[Take], target_lufs: float) -> None:
    """Print the per-speaker table and every measure against its threshold (each take's master
    and real-time factor must pass on its own)."""
    import jiwer
    import pyloudnorm

    print()
    print(f"{'speaker':<8} {'lines':>5} {'attributed':>10} {'cos own':>8} {'cos base':>8} "
          f"{'WER':>6} {'WER base':>8}")
    for name in [v.name for v in VOICES]:
        mine = [r for r in results if r.speaker == name]
        wer = jiwer.wer([r.reference_text for r in mine], [r.hypothesis for r in mine])
        wer_base = unadapted_wer(mine)
        print(f"{name:<8} {len(mine):>5} {sum(r.attributed for r in mine):>10} "
              f"{statistics.mean(r.cosines[name] for r in mine):>8.3f} "
              f"{statistics.mean(r.unadapted_cosine for r in mine):>8.3f} "
              f"{wer:>6.3f} {wer_base:>8.3f}")

    print("\nnearest reference per line, first take (cosine to own / best other):")
    for r in results[: len(DIALOGUE)]:
        other = max((c, n) for n, c in r.cosines.items() if n != r.speaker)
        print(f"  {r.speaker:<8} {r.cosines[r.speaker]:.3f} / {other[0]:.3f} ({other[1]})")

    attribution = sum(r.attributed for r in results) / len(results)
    gain = statistics.mean(r.cosines[r.speaker] - r.unadapted_cosine for r in results)
    wer = jiwer.wer([r.reference_text for r in results], [r.hypothesis for r in results])
    wer_base = unadapted_wer(results)
    errors = np.array([e for r in results for e in r.timing_errors])
    lines_aligned = sum(bool(r.timing_errors) for r in results)
    loudness = [pyloudnorm.Meter(t.rate).integrated_loudness(t.master.astype(np.float64))
                for t in takes]
    worst_loudness = max(loudness, key=lambda value: abs(value - target_lufs))
    peak = max(true_peak_dbtp(t.master) for t in takes)
    slowest = max(takes, key=lambda t: t.rtf)
    median = float(np.median(errors)) if len(errors) else math.inf
    p95 = float(np.percentile(errors, 95)) if len(errors) else math.inf

    t = THRESHOLDS
    rows = [
        ("attribution", f"{attribution:.1%} of {len(results)} lines ({len(takes)} takes)",
         f">= {t['attribution']:.0%}", attribution >= t["attribution"]),
        ("similarity gain", f"{gain:+.3f}", f"> {t['similarity_gain']}",
         gain > t["similarity_gain"]),
        ("WER adapted / unadapted", f"{wer:.3f} / {wer_base:.3f}",
         f"adapted <= unadapted + {t['wer_margin']}", wer <= wer_base + t["wer_margin"]),
        ("word start error median", f"{median * 1000:.0f} ms ({len(errors)} words, "
         f"{lines_aligned} lines aligned)", f"<= {t['timing_median_s'] * 1000:.0f} ms",
         median <= t["timing_median_s"]),
        ("word start error p95", f"{p95 * 1000:.0f} ms", f"<= {t['timing_p95_s'] * 1000:.0f} ms",
         p95 <= t["timing_p95_s"]),
        ("integrated loudness", f"{worst_loudness:.2f} LUFS (farthest take)",
         f"{target_lufs:g} +- {t['loudness_lu']} LU",
         abs(worst_loudness - target_lufs) <= t["loudness_lu"]),
        ("true peak", f"{peak:.2f} dBTP (highest take)", f"<= {t['true_peak_dbtp']} dBTP",
         peak <= t["true_peak_dbtp"] + 0.005),
        ("real-time factor", f"{slowest.rtf:.3f} (slowest take: {slowest.job_seconds:.1f} s "
         f"for {slowest.captions['duration']:.1f} s)", f"<= {t['rtf']}", slowest.rtf <= t["rtf"]),
    ]
    print()
    print(f"{'measure':<26} {'value':<40} {'threshold':<32} result")
    for label, value, threshold, ok in rows:
        print(f"{label:<26} {value:<40} {threshold:<32} {'PASS' if ok else 'FAIL'}")
    print()
    for number, take in enumerate(takes, 1):
        duration = take.captions["duration"]
        print(f"take {number}: real-time factor {take.rtf:.3f}, {loudness[number - 1]:.2f} LUFS; "
              f"its lines spent {take.engine_seconds:.1f} s in the engine, summed over the "
              f"line threads; this process used {take.cpu_seconds:.1f} s of CPU "
              f"({take.cpu_seconds / duration:.3f} of the audio's duration) on "
              f"{os.cpu_count()} cores")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("all thresholds met" if all(ok for *_, ok in rows) else "some thresholds are not met")


if __name__ == "__main__":
    main()
