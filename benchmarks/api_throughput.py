"""API throughput: wrk against a served `voicereel serve`, job polls and job submissions.

For each database (SQLite, PostgreSQL) and each number of API processes (`--workers`), it
starts `voicereel serve` on a loopback port with a fresh data dir (PostgreSQL: a schema of its
own, dropped afterwards), makes a tenant key without rate or job limits, registers one speaker
and renders one job. Then wrk, with `--connections` connections for `--seconds` seconds:

- polls: `GET /v1/jobs/{id}` of that succeeded job (its view signs four download URLs);
- submissions: `POST /v1/synthesize` of a one-line job (the inline runner renders them in the
  same processes meanwhile; they are dropped with the data dir).

It prints requests per second, p50/p99 latency, errors (socket errors and non-2xx answers),
and the CPU time the server's processes spent per request (user + system, from /proc), which
moves less than the rate when other work shares the machine; and the load average after.
`--src` runs the server from another checkout's `src` (e.g. `/work/main/src`) with this venv, to
measure a "before" in the same run (a checkout without `serve --workers` takes only
`--workers 1`).

    .venv/bin/python benchmarks/api_throughput.py [--db sqlite postgres] [--workers 1 2]
        [--seconds 15] [--connections 32] [--src ../main/src]

Needs wrk (Debian package `wrk`, installed by `make system-deps`); PostgreSQL at
`--postgres-url` for the PostgreSQL rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
READY_SECONDS = 180.0

# Runs in the server's code (`--src`): a key without rate limit nor job-slot limit.
MAKE_KEY = """
import sys
from voicereel import operations
from voicereel.services import build_services
from voicereel.settings import Settings
services = build_services(Settings())
services.db.migrate()
key, _ = operations.create_key_with_options(services, "bench", rate_limit_per_minute=0,
                                            max_concurrent_jobs=0)
print(key)
"""

POST_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""

GET_LUA = """
wrk.headers["Authorization"] = "Bearer {key}"
"""


@dataclass
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors (connect, read, write, timeout) and non-2xx/3xx answers
    processes: int  # distinct X-VoiceReel-Process values seen while warming up (0: no header)
    cpu_ms_per_request: float = 0.0  # the server processes' CPU time over the run, per request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def database(kind: str, folder: Path, postgres_url: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'voicereel.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


@contextmanager
def served(src: Path, database_url: str, folder: Path, workers: int,
           redis_url: str) -> Iterator[tuple[str, str, int]]:
    """A `voicereel serve` from `src` on a free port; yields its base URL, a bench key and its
    process id."""
    env = {**os.environ, "PYTHONPATH": str(src), "VOICEREEL_DATA_DIR": str(folder / "data"),
           "VOICEREEL_DATABASE_URL": database_url, "VOICEREEL_LOG_LEVEL": "WARNING",
           # several processes count rate limits in Redis (the bench key has none)
           "VOICEREEL_RATE_LIMIT_REDIS_URL": redis_url if workers > 1 else ""}
    key = subprocess.run([sys.executable, "-c", MAKE_KEY], env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    command = [sys.executable, "-m", "voicereel", "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    log_path = folder / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server never became ready")
            time.sleep(0.2)
        yield base, key, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare(client: httpx.Client) -> tuple[str, str]:
    """A speaker and one succeeded job of it: (speaker id, job id)."""
    from voicereel.demo import make_reference

    r = client.post("/v1/speakers", data={"name": "Bench"},
                    files={"audio": ("r.wav", make_reference(1.0, 1.0), "audio/wav")})
    r.raise_for_status()
    speaker = str(r.json()["id"])
    r = client.post("/v1/synthesize", json={"script": [{"speaker_id": speaker, "text": "Hi."}]})
    r.raise_for_status()
    job_url = r.headers["location"]
    deadline = time.monotonic() + 120
    while (state := client.get(job_url).json())["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the job did not finish: {state}")
        time.sleep(0.1)
    if state["status"] != "succeeded":
        raise SystemExit(f"the job failed: {state}")
    return speaker, str(state["id"])


def processes_answering(client: httpx.Client, path: str) -> int:
    """How many API processes answer (their X-VoiceReel-Process header), over 64 requests,
    each on a new connection."""
    seen = {client.get(path, headers={"Connection": "close"}).headers.get("x-voicereel-process")
            for _ in range(64)}
    return len(seen - {None})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its living descendants, with that of the
    children they waited for (Linux /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def wrk(url: str, lua: str, folder: Path, seconds: int, connections: int,
        server_pid: int) -> Figures:
    script = folder / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(lua)
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "--timeout", "5s", "-s", str(script), url],
                         check=True, capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    figures = parse_wrk(out)
    figures.cpu_ms_per_request = ((cpu_seconds(server_pid) - cpu_before) * 1000
                                  / max(figures.requests, 1))
    return figures


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(out: str) -> Figures:
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not (p50 and p99 and rps and total):
        raise SystemExit(f"could not read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(
        r"(?:connect|read|write|timeout) (\d+)", out.split("Socket errors:", 1)[-1].split("\n")[0]
    )) if "Socket errors:" in out else 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Figures(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)),
                   int(total.group(1)), errors, 0)


def run(kind: str, workers: int, args: argparse.Namespace) -> dict[str, Figures]:
    folder = Path(tempfile.mkdtemp(prefix="voicereel-throughput-"))
    try:
        with database(kind, folder, args.postgres_url) as url, \
                served(args.src, url, folder, workers, args.redis_url) as (base, key, pid):
            with httpx.Client(base_url=base, timeout=120,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                speaker, job_id = prepare(client)
                answering = processes_answering(client, f"/v1/jobs/{job_id}")
            body = json.dumps({"script": [{"speaker_id": speaker, "text": "Hi."}]})
            figures = {}
            if "polls" in args.what:
                figures["polls"] = wrk(f"{base}/v1/jobs/{job_id}", GET_LUA.format(key=key),
                                       folder, args.seconds, args.connections, pid)
            if "submissions" in args.what:
                figures["submissions"] = wrk(f"{base}/v1/synthesize",
                                             POST_LUA.format(body=json.dumps(body), key=key),
                                             folder, args.seconds, args.connections, pid)
            for f in figures.values():
                f.processes = answering
            return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgres"],
                        default=["sqlite", "postgres"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--what", nargs="+", choices=["polls", "submissions"],
                        default=["polls", "submissions"])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the checkout's src directory whose server is measured")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="rate-limit counters of several processes")
    args = parser.parse_args()
    args.src = args.src.resolve()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `make system-deps` installs it")

    print(f"server code: {args.src}; wrk -t2 -c{args.connections} -d{args.seconds}s; "
          f"{os.cpu_count()} CPUs")
    print(f"{'db':9} {'procs':>5} {'what':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'requests':>9} {'errors':>7} {'seen':>5} {'cpu ms':>7} {'load':>5}")
    for kind in args.db:
        for workers in args.workers:
            for what, f in run(kind, workers, args).items():
                print(f"{kind:9} {workers:>5} {what:12} {f.requests_per_second:8.1f} "
                      f"{f.p50_ms:8.1f} {f.p99_ms:8.1f} {f.requests:9d} {f.errors:7d} "
                      f"{f.processes:>5} {f.cpu_ms_per_request:7.2f} "
                      f"{os.getloadavg()[0]:5.1f}", flush=True)


if __name__ == "__main__":
    main()
