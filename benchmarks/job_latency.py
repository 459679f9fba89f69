"""Job latency: raw piper synthesis time vs. submit-to-succeeded time through the HTTP API.

Renders a ~30 s two-speaker dialogue both ways in the same run and prints the seconds and
their ratio (the service's overhead on top of the engine: normalisation, adaptation, mixing,
loudness, encoding, captions, storage, database and polling).

    .venv/bin/python benchmarks/job_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from voicereel.demo import local_service, register_voices
from voicereel.engines.piper import PiperEngine
from voicereel.settings import Settings

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


def raw_piper_seconds(engine: PiperEngine) -> tuple[float, float]:
    """Seconds to render every line with bare piper, and the audio seconds produced."""
    start = time.perf_counter()
    produced = 0
    for _, text in DIALOGUE:
        audio, _ = engine.render_base(text)
        produced += len(audio)
    return time.perf_counter() - start, produced / engine.sample_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    engine = PiperEngine(Settings())
    engine.warm_up()
    # Polling every 20 ms keeps the measurement sharp; the per-key rate limit would refuse it.
    with local_service("bench", rate_limit_per_minute=0) as client:
        ids = register_voices(client)
        script = [{"speaker_id": ids[name], "text": text} for name, text in DIALOGUE]
        raw, job, audio_seconds = [], [], 0.0
        for _ in range(args.repeat):
            seconds, audio_seconds = raw_piper_seconds(engine)
            raw.append(seconds)
            start = time.perf_counter()
            r = client.post("/v1/synthesize", json={"script": script})
            r.raise_for_status()
            while (state := client.get(r.headers["location"]).json())["status"] in (
                    "queued", "running"):
                time.sleep(0.02)
            job.append(time.perf_counter() - start)
            assert state["status"] == "succeeded", state
            job_audio = state["result"]["duration"]
    raw_s, job_s = statistics.median(raw), statistics.median(job)
    print(f"dialogue: {len(DIALOGUE)} lines, 2 speakers, {job_audio:.1f} s of audio "
          f"(bare piper: {audio_seconds:.1f} s)")
    print(f"raw piper synthesis       {raw_s:7.2f} s  (median of {args.repeat})")
    print(f"submit-to-succeeded       {job_s:7.2f} s  (median of {args.repeat})")
    print(f"ratio job / raw           {job_s / raw_s:7.2f}")
    print(f"job real-time factor      {job_s / job_audio:7.3f}")


if __name__ == "__main__":
    main()
