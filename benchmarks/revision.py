"""Revision: the time to fix one line of a 40-line dialogue against the original job's.

Renders a 40-line two-speaker dialogue through the HTTP API (submit to succeeded), then, in the
same run, revises one line's text (submit of the revision to succeeded), a few times, and
prints both times and their ratio. Target: a one-line fix in under 15 % of the original time.

    .venv/bin/python benchmarks/revision.py [--lines 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from fastapi.testclient import TestClient

from voicereel.demo import local_service, register_voices

TURNS = [
    "Did you see the harbour this morning, before the fog came in?",
    "I did. The boats were out early, all of them heading north.",
    "They say the storm will reach the coast by the end of the week.",
    "Then we should finish the recording before the power goes out.",
    "Agreed. Let us read the next scene and keep the pace up.",
]


def wait_succeeded(client: TestClient, location: str) -> dict[str, Any]:
    while (state := client.get(location).json())["status"] in ("queued", "running"):
        time.sleep(0.02)
    assert state["status"] == "succeeded", state
    return dict(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    # Polling every 20 ms keeps the measurement sharp; the per-key rate limit would refuse it.
    with local_service("bench", rate_limit_per_minute=0) as client:
        ids = list(register_voices(client).values())
        script = [{"speaker_id": ids[i % len(ids)],
                   "text": f"{TURNS[i % len(TURNS)]} That was take {i + 1}."}
                  for i in range(args.lines)]

        start = time.perf_counter()
        r = client.post("/v1/synthesize", json={"script": script})
        r.raise_for_status()
        job_id = r.json()["job_id"]
        original = wait_succeeded(client, f"/v1/jobs/{job_id}")
        original_s = time.perf_counter() - start

        fixes = []
        for n in range(args.repeat):
            line = (7 + 11 * n) % args.lines
            start = time.perf_counter()
            r = client.post(f"/v1/jobs/{job_id}/revisions", json={"edits": [
                {"line": line, "text": f"{TURNS[line % len(TURNS)]} Fixed in revision {n + 2}."}]})
            r.raise_for_status()
            assert r.json()["lines_to_render"] == [line], r.json()
            wait_succeeded(client, r.headers["location"])
            fixes.append(time.perf_counter() - start)
        revisions = client.get(f"/v1/jobs/{job_id}/revisions").json()["revisions"]
    fix_s = statistics.median(fixes)
    print(f"dialogue: {args.lines} lines, 2 speakers, {original['result']['duration']:.1f} s "
          f"of audio")
    print(f"original job, submit-to-succeeded    {original_s:7.2f} s")
    print(f"one-line revision, submit-to-succeeded {fix_s:5.2f} s  (median of {args.repeat}: "
          + ", ".join(f"{s:.2f}" for s in fixes) + ")")
    print(f"ratio revision / original            {fix_s / original_s:7.3f}  (target < 0.15)")
    print("characters rendered per revision     "
          + ", ".join(str(r["characters"]) for r in revisions))


if __name__ == "__main__":
    main()
