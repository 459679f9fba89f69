"""Fan-out: wall time of a five-minute script on one Celery worker and on two.

Starts real `voicereel worker --concurrency 1` processes on Redis (a database of its own,
emptied first) and SQLite in a temporary folder, submits one 38-line two-speaker dialogue
per run, and prints the audio length, each wall time (submit to succeeded) and their ratio,
plus the two phases: rendering the lines (fanned out) and assembling them (one process).

Two placements: `own-core` gives each worker one CPU of its own (`taskset`), as a
worker on a machine of its own has, so that the ratio measures how the job spreads over
workers; `shared` lets the workers share every CPU of this machine, where one worker alone
already keeps them busy rendering two lines at a time.

    .venv/bin/python benchmarks/fanout.py [--lines 38] [--placement own-core shared]
        [--broker redis://127.0.0.1:6379/10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from texts import SENTENCES  # benchmarks/, beside this script

from voicereel import operations
from voicereel.db import repo
from voicereel.db.tables import Job
from voicereel.demo import VOICES, make_reference
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs.runners.celery import CeleryRunner
from voicereel.services import Services, build_services
from voicereel.settings import Settings


def start_workers(count: int, env: dict[str, str], root: Path,
                  cpus: list[set[int]] | None) -> list[subprocess.Popen[bytes]]:
    """`count` workers; worker n runs on `cpus[n]` only when `cpus` is given."""
    procs = []
    for n in range(count):
        log = open(root / f"worker-{count}-{n}.log", "wb")  # noqa: SIM115 - the process owns it
        command = [sys.executable, "-m", "voicereel", "worker", "--concurrency", "1"]
        if cpus is not None:
            command = ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus[n]))), *command]
        procs.append(subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 180
    while sum((root / f"worker-{count}-{n}.log").read_text(errors="replace")
              .count("rendering process") for n in range(count)) < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit(f"workers did not start; see {root}")
        time.sleep(0.2)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_once(services: Services, runner: CeleryRunner, tenant_name: str,
             request: SynthesisRequest) -> tuple[float, float, float]:
    """Submit the script: seconds until every line was rendered, until it succeeded, and the
    seconds of audio made."""
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
    start = time.perf_counter()
    lines_done = 0.0
    job_id = operations.submit_job(services, runner, tenant, request).id
    while True:
        with services.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
        if not lines_done and job.units_done >= len(request.script):
            lines_done = time.perf_counter() - start
        if job.status in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    if job.status != "succeeded":
        raise SystemExit(f"job {job_id} {job.status}: {job.error}")
    return lines_done, time.perf_counter() - start, job.audio_seconds or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=38)  # about five minutes of audio
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--placement", nargs="+", choices=["own-core", "shared"],
                        default=["own-core", "shared"])
    args = parser.parse_args()
    available = sorted(os.sched_getaffinity(0))
    if "own-core" in args.placement and len(available) < 2:
        raise SystemExit("own-core needs two CPUs")

    redis.Redis.from_url(args.broker).flushdb()
    root = Path(tempfile.mkdtemp(prefix="voicereel-fanout-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEREEL_")}
    env.update({"VOICEREEL_RUNNER": "celery", "VOICEREEL_BROKER_URL": args.broker,
                "VOICEREEL_DATA_DIR": str(root / "data")})
    settings = Settings(runner="celery", broker_url=args.broker, data_dir=root / "data")
    services = build_services(settings)
    services.db.migrate()
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, "bench")
    speakers = [operations.register_speaker(services, tenant, name, make_reference(*voice),
                                            "", "en")
                for name, voice in VOICES.items()]
    script = [{"speaker_id": speakers[i % 2].id,
               "text": f"{SENTENCES[i % len(SENTENCES)]} {SENTENCES[(i + 3) % len(SENTENCES)]}"}
              for i in range(args.lines)]
    request = SynthesisRequest.model_validate({"script": script, "captions": ["json"]})

    runner = CeleryRunner(services)
    for placement in args.placement:
        cpus = [{available[0]}, {available[1]}] if placement == "own-core" else None
        walls, renders = {}, {}
        for workers in (1, 2):
            procs = start_workers(workers, env, root, cpus)
            try:
                renders[workers], walls[workers], audio = run_once(services, runner, "bench",
                                                                   request)
            finally:
                stop_workers(procs)
            print(f"{placement}: {workers} worker(s): {walls[workers]:6.1f} s wall for "
                  f"{audio:.0f} s of audio ({args.lines} lines): lines rendered after "
                  f"{renders[workers]:.1f} s, assembly {walls[workers] - renders[workers]:.1f} s",
                  flush=True)
        print(f"{placement}: speed-up with two workers: {walls[1] / walls[2]:.2f}x "
              f"(rendering the lines: {renders[1] / renders[2]:.2f}x)", flush=True)
    services.db.dispose()


if __name__ == "__main__":
    main()
