"""Captions: cue layout of a 40-line dialogue by each style profile, with and without
`fit: pauses`.

Renders the dialogue once through the HTTP API (real piper word times), then lays its caption
JSON out by every profile and prints cues per minute, max and p95 reading speed, the share of
cues within every limit (target: 100 % with fit, at least 95 % without), the silence the fit
adds, and the layout time per minute of audio (target: under 50 ms).

    .venv/bin/python benchmarks/captions.py [--lines 40]
"""

from __future__ import annotations

import argparse
import json
import time

from voicereel.demo import local_service, register_voices
from voicereel.domain.caption_layout import (
    PROFILES,
    Insertion,
    apply_insertions,
    extra_pauses,
    layout,
    quality_report,
)

TURNS = [
    "Did you see the harbour this morning, before the fog came in over the water?",
    "I did. The boats were out early, all of them heading north to the fishing grounds.",
    "They say the storm will reach the coast by Friday, and the ferries will stop running.",
    "Then we finish the recording tonight.",
    "Agreed. Let us read the next scene, keep the pace up, and not stop for small mistakes.",
    "Yes.",
    "Absolutely, without any doubt whatsoever, extraordinary circumstances.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()

    with local_service("bench", rate_limit_per_minute=0) as client:
        ids = list(register_voices(client).values())
        script = [{"speaker_id": ids[i % 2], "text": TURNS[i % len(TURNS)]}
                  for i in range(args.lines)]
        r = client.post("/v1/synthesize", json={"script": script, "captions": ["json"]})
        r.raise_for_status()
        while (job := client.get(r.headers["location"]).json())["status"] in ("queued",
                                                                             "running"):
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        captions = json.loads(client.get(job["result"]["captions"]["json"]["url"]).content)

    minutes = captions["duration"] / 60
    print(f"dialogue: {args.lines} lines, {captions['duration']:.1f} s of audio (piper)")
    print(f"{'profile':<11} {'fit':<6} {'cues/min':>8} {'max cps':>8} {'p95 cps':>8} "
          f"{'within':>7} {'added s':>8} {'ms/min':>7}")
    for name, style in PROFILES.items():
        for fit in (False, True):
            started = time.perf_counter()
            rounds = 20
            for _ in range(rounds):
                laid = layout(captions, style)
            per_minute_ms = (time.perf_counter() - started) / rounds * 1000 / minutes
            added: list[Insertion] = []
            if fit:
                added = extra_pauses(captions, style)
                laid = layout(apply_insertions(captions, added), style)
            report = quality_report(laid, style, name)
            within = report["cues_within_limits"] / report["cues"]
            print(f"{name:<11} {'pauses' if fit else '-':<6} {report['cues'] / minutes:8.1f} "
                  f"{report['max_chars_per_second']:8.1f} {report['p95_chars_per_second']:8.1f} "
                  f"{within:7.1%} {sum(i.seconds for i in added):8.2f} {per_minute_ms:7.2f}")
            if fit and within < 1:
                limits = sorted({v["limit"] for v in report["violations"]})
                print(f"{'':<11} still over: {', '.join(limits)}")


if __name__ == "__main__":
    main()
