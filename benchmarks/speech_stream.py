"""Streaming speech: time to first byte and full time of `POST /v1/audio/speech`, streamed
(`stream_format` audio, the default) against the whole answer (`"stream": false`) of the same
four-sentence input, in the same run, through a live server on loopback.

Prints the medians of a few repeats in ms and as ratios (targets: streamed TTFB <= 300 ms and
<= 20 % of the whole render), then what the first chunk waits for, stage by stage, measured
in-process on the same engine.

    .venv/bin/python benchmarks/speech_stream.py [--repeat 5] [--format pcm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx
import numpy as np

from voicereel.demo import local_service, register_voices
from voicereel.engines import adapt, piper
from voicereel.engines.base import Voice
from voicereel.engines.piper import PiperEngine, level_chunk, stream_chunks
from voicereel.openai_speech import _level
from voicereel.settings import Settings

TEXT = ("The old lighthouse stood at the edge of the cliff for more than a century. "
        "Every night its keeper climbed the narrow stairs and lit the great lamp. "
        "Ships far out at sea looked for its steady beam and turned away from the rocks. "
        "Nobody remembers his name, but the sailors never forgot the light.")


def timed(client: httpx.Client, body: dict[str, object]) -> tuple[float, float, int]:
    """Seconds to the first body byte, seconds to the last, and the bytes received."""
    start = time.perf_counter()
    first = 0.0
    size = 0
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for piece in response.iter_raw():
            if piece and not first:
                first = time.perf_counter() - start
            size += len(piece)
    return first, time.perf_counter() - start, size


def first_chunk_stages(repeat: int) -> dict[str, float]:
    """Median ms of each step before a stream's first chunk, in-process (model warm)."""
    engine = PiperEngine(Settings())
    engine.warm_up()
    voice = Voice("spk_bench", "bench", "en", "", {})
    services = type("S", (), {"settings": Settings()})()
    profile = engine.profile_of(voice)
    tokens = TEXT.split()
    start, end = stream_chunks(tokens)[0]
    stages: dict[str, list[float]] = {"piper render": [], "voice adaptation (WORLD)": [],
                                      "chunk levelling": [], "loudness + true peak": []}
    for seed in range(repeat):
        t0 = time.perf_counter()
        audio, _ = engine.render_base(" ".join(tokens[start:end]), seed=seed)
        t1 = time.perf_counter()
        audio = adapt.transform(audio, engine.sample_rate, profile)
        t2 = time.perf_counter()
        audio = level_chunk(audio, engine.sample_rate)
        t3 = time.perf_counter()
        _level(services, np.asarray(audio, np.float32))  # type: ignore[arg-type]
        t4 = time.perf_counter()
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(seconds * 1000)
    return {name: statistics.median(values) for name, values in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", default="pcm", choices=["pcm", "wav", "mp3", "opus"])
    parser.add_argument("--first-words", type=int, nargs="+", default=[piper.FIRST_STREAM_WORDS],
                        help="piper's first-chunk length(s) to compare (the server runs here)")
    args = parser.parse_args()

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} on {os.cpu_count()} cores (1, 5, 15 min)")
    with local_service("bench", rate_limit_per_minute=0) as client:
        voice = register_voices(client)["Alice"]
        body: dict[str, object] = {"model": "tts-1", "voice": voice, "input": TEXT,
                                   "response_format": args.format}
        timed(client, {**body, "seed": 0})  # the first render of a speaker reads its profile
        streamed: dict[int, list[tuple[float, float, int]]] = {n: [] for n in args.first_words}
        whole: list[tuple[float, float, int]] = []
        for seed in range(1, args.repeat + 1):
            # alternated, so that a change in the machine's load touches all alike
            for words in args.first_words:
                piper.FIRST_STREAM_WORDS = words
                streamed[words].append(timed(client, {**body, "seed": seed}))
            whole.append(timed(client, {**body, "seed": seed, "stream": False}))

    def median(rows: list[tuple[float, float, int]], k: int) -> float:
        return statistics.median(row[k] for row in rows) * 1000

    w_first, w_full = median(whole, 0), median(whole, 1)
    print(f"{args.format}, {len(TEXT)} characters, 4 sentences, median of {args.repeat}:")
    print(f"  whole:    first byte {w_first:7.0f} ms, full {w_full:7.0f} ms")
    for words, rows in streamed.items():
        s_first, s_full = median(rows, 0), median(rows, 1)
        print(f"  streamed (first chunk <= {words} words): first byte {s_first:5.0f} ms, "
              f"full {s_full:5.0f} ms; TTFB / whole render {s_first / w_full:.1%} "
              f"(target <= 20 %), full / whole full {s_full / w_full:.2f}")
    print("first chunk, stage by stage (in-process, median ms):")
    for name, ms in first_chunk_stages(args.repeat).items():
        print(f"  {name:26s} {ms:6.1f}")


if __name__ == "__main__":
    main()
