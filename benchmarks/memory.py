"""Worker memory: RSS with the piper engine loaded, and the peak RSS of long jobs.

    .venv/bin/python benchmarks/memory.py [--job-minutes 10 60]

First the process's RSS before and after the piper engine is loaded (target: <= 600 MB). Then,
for each length asked for, a fresh process renders one two-speaker job of about that many
minutes of audio (adapted voices, WAV, stems, VTT and JSON captions) on the inline runner with
SQLite and local files. It prints the RSS and peak RSS once a two-line job warmed the process,
the peak RSS over the long job, and the growth of the peak per minute of audio: bounded memory
grows by far less than the job's float32 audio (5.5 MB a minute at 24 kHz; the master, each
stem and the gain curve were one such array each before they were streamed). The benchmark
allows scripts longer than the default limits (VOICEREEL_MAX_SCRIPT_LINES / _CHARS) so that
an hour fits in one job.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from texts import SENTENCES  # benchmarks/, beside this script

SECONDS_PER_LINE = 16.0  # four sentences of the built-in voice, with the pause after them


def rss_mb() -> float:
    """The current resident set size in MB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_figures() -> None:
    from voicereel.engines.piper import PiperEngine
    from voicereel.settings import Settings

    start = rss_mb()
    engine = PiperEngine(Settings())
    engine.warm_up()
    print(f"rss_start_mb={start:.0f} rss_engine_loaded_mb={rss_mb():.0f} "
          f"peak_mb={peak_mb():.0f}", flush=True)


def bench_settings(root: str, lines: int) -> Any:
    from voicereel.settings import Settings

    return Settings(data_dir=Path(root), database_url="", max_script_lines=lines + 10,
                    max_script_chars=400 * lines, max_job_audio_seconds=4 * 3600)


def register(root: str) -> None:
    """Make the service's database and the two voices, then print their ids (the API's work,
    kept out of the measured process as a worker never analyses uploads)."""
    from voicereel import operations
    from voicereel.db import repo
    from voicereel.demo import VOICES, make_reference
    from voicereel.services import build_services

    services = build_services(bench_settings(root, 2))
    services.db.migrate()
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, "bench")
    print(" ".join(operations.register_speaker(services, tenant, name, make_reference(*voice),
                                               "", "en").id for name, voice in VOICES.items()))
    services.db.dispose()


def one_job(minutes: float) -> None:
    """Render one job of about `minutes` of audio in this process and print its memory."""
    from voicereel import operations
    from voicereel.db import repo
    from voicereel.db.tables import Job
    from voicereel.domain.script import SynthesisRequest
    from voicereel.jobs.runners.inline import InlineRunner
    from voicereel.services import build_services

    lines = max(2, round(minutes * 60 / SECONDS_PER_LINE))
    with tempfile.TemporaryDirectory(prefix="voicereel-memory-") as root:
        speakers = subprocess.run([sys.executable, __file__, "--register", root], check=True,
                                  capture_output=True, text=True).stdout.split()
        services = build_services(bench_settings(root, lines))
        runner = InlineRunner(services)
        runner.start()
        with services.db.session() as session:
            tenant = repo.get_or_create_tenant(session, "bench")

        def run(script: list[dict[str, str]]) -> tuple[Job, float]:
            request = SynthesisRequest.model_validate({
                "script": script, "output": {"format": "wav", "stems": True},
                "captions": ["vtt", "json"]})
            start = time.perf_counter()
            job_id = operations.submit_job(services, runner, tenant, request).id
            while True:
                with services.db.session() as session:
                    job = session.get(Job, job_id)
                    assert job is not None
                if job.status in ("succeeded", "failed", "canceled"):
                    break
                time.sleep(0.2)
            if job.status != "succeeded":
                raise SystemExit(f"job {job_id} {job.status}: {job.error}")
            return job, time.perf_counter() - start

        script = [{"speaker_id": speakers[i % 2],
                   "text": " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(4))}
                  for i in range(lines)]
        # Two lines of the same kind first: the engine, both voices and the memory one line
        # takes to render (WORLD's arrays) are in the warm figure, not in the job's growth.
        run(script[:2])
        warm, warm_peak = rss_mb(), peak_mb()
        job, seconds = run(script)
        audio_minutes = (job.audio_seconds or 0.0) / 60
        peak = peak_mb()
        print(f"job of {audio_minutes:.1f} min of audio ({lines} lines, stems for 2 speakers) "
              f"in {seconds:.0f} s: rss_warm_mb={warm:.0f} peak_warm_mb={warm_peak:.0f} "
              f"peak_mb={peak:.0f} growth={peak - warm_peak:.0f} MB "
              f"({(peak - warm_peak) / audio_minutes:.1f} MB per minute "
              f"of audio; its float32 audio is {audio_minutes * 60 * 24000 * 4 / 2**20:.0f} MB)",
              flush=True)
        runner.stop()
        services.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-minutes", type=float, nargs="*", default=[],
                        help="render a job of about this many minutes in a fresh process")
    parser.add_argument("--one-job", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--register", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.register:
        register(args.register)
        return
    if args.one_job:
        one_job(args.one_job)
        return
    engine_figures()
    for minutes in args.job_minutes:
        subprocess.run([sys.executable, __file__, "--one-job", str(minutes)], check=True)


if __name__ == "__main__":
    main()
