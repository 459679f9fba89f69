"""A small VoiceReel cluster for tests: real Redis, real `voicereel worker` processes, an API.

Workers are subprocesses in their own session, so a test can kill one rendering process
(`kill_process`) or a whole worker with its children (`kill`), like a machine that dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from voicereel import operations
from voicereel.api.app import create_app
from voicereel.db.tables import Job, JobUnit
from voicereel.services import Services, build_services
from voicereel.settings import Settings

# A Redis database of its own, emptied by every cluster that starts on it: one per pytest-xdist
# worker (gw0 11, gw1 10, ...), since clusters of several test files may run at once.
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
assert _XDIST_WORKER < 8, "Redis databases 1-11 hold the clusters of at most 8 test workers"
BROKER_URL = os.environ.get("VOICEREEL_TEST_CELERY_BROKER_URL",
                            f"redis://127.0.0.1:6379/{11 - _XDIST_WORKER}")
# Short leases and sweeps so that a dead process is noticed within seconds.
FAST_RECOVERY = {"VOICEREEL_JOB_LEASE_SECONDS": "5", "VOICEREEL_SWEEP_INTERVAL_SECONDS": "1",
                 "VOICEREEL_REDISPATCH_SECONDS": "4", "VOICEREEL_BROKER_TIMEOUT_SECONDS": "1"}
# The tests submit and poll faster than a customer may.
NO_REQUEST_LIMITS = {"VOICEREEL_RATE_LIMIT_PER_MINUTE": "0", "VOICEREEL_MAX_CONCURRENT_JOBS": "0"}
FINISHED = ("succeeded", "failed", "canceled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
              interval: float = 0.25) -> Any:
    """Poll until `condition()` is truthy and return it; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@dataclass
class Worker:
    """One `voicereel worker` subprocess (a main process and its rendering children)."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait until the worker listens and its rendering process has loaded the model."""
        def ready() -> bool:
            assert self.proc.poll() is None, self.log()
            log = self.log()
            return " ready." in log and "rendering process" in log
        wait_for(ready, timeout, "a worker to start", interval=0.2)

    def kill(self) -> None:
        """kill -9 the worker and every process it started."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # warm shutdown: the main process stops its children
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class RedisServer:
    """A redis-server of the test's own, without persistence: a restart loses every key."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
            except redis.ConnectionError:
                return False
        wait_for(answers, 20, "redis-server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@dataclass
class Cluster:
    """Settings shared by the API and the workers; workers started on demand."""

    env: dict[str, str]
    root: Path
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(**{k.removeprefix("VOICEREEL_").lower(): v for k, v in self.env.items()
                           if k.startswith("VOICEREEL_")})

    def start_worker(self, concurrency: int = 1, wait: bool = True) -> Worker:
        log_path = self.root / f"worker-{len(self.workers)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "voicereel", "worker", "--concurrency", str(concurrency)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(proc, log_path)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def cluster_env(database_url: str, root: Path, broker_url: str = BROKER_URL,
                **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEREEL_")}
    env.update({"VOICEREEL_RUNNER": "celery", "VOICEREEL_BROKER_URL": broker_url,
                "VOICEREEL_DATABASE_URL": database_url,
                "VOICEREEL_DATA_DIR": str(root / "data"), **FAST_RECOVERY, **NO_REQUEST_LIMITS,
                **extra})
    return env


def flush_broker(broker_url: str) -> None:
    """Empty the test's Redis database; fails loudly when Redis is not there."""
    redis.Redis.from_url(broker_url, socket_connect_timeout=2).flushdb()


@contextmanager
def own_database(url: str) -> Iterator[str]:
    """A PostgreSQL database of this cluster alone, on the server of `url`.

    The workers' sweep takes every job it finds, so jobs other tests leave in the shared test
    database must not be there. SQLite URLs are already one file per test.
    """
    if not url.startswith("postgresql"):
        yield url
        return
    name = f"voicereel_cluster_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        # Without the query: a schema-scoped URL (tests/conftest.py) names no schema there.
        own = make_url(url).set(database=name, query={})
        yield own.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def cluster(database_url: str, root: Path, broker_url: str = BROKER_URL,
            **extra: str) -> Iterator[Cluster]:
    flush_broker(broker_url)
    with own_database(database_url) as url:
        group = Cluster(cluster_env(url, root, broker_url, **extra), root)
        services = build_services(group.settings)
        services.db.migrate()  # workers never migrate; `serve` or `migrate` does
        services.db.dispose()
        try:
            yield group
        finally:
            group.stop()


@contextmanager
def api_client(settings: Settings, tenant: str) -> Iterator[tuple[TestClient, Services]]:
    """The app in this process with the celery runner, and a key of `tenant`."""
    services = build_services(settings)
    key = operations.create_key(services, tenant)
    try:
        with TestClient(create_app(settings, services)) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, services
    finally:
        services.db.dispose()


def add_speakers(client: TestClient, wavs: dict[str, bytes]) -> dict[str, str]:
    ids = {}
    for name, wav in wavs.items():
        r = client.post("/v1/speakers", data={"name": name},
                        files={"audio": (f"{name}.wav", wav, "audio/wav")})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


def dialogue(ids: dict[str, str], lines: int, tag: str = "") -> list[dict[str, Any]]:
    names = sorted(ids)
    return [{"speaker_id": ids[names[i % len(names)]],
             "text": f"{tag}Line {i + 1} of {lines}: the lamp turns and the ships keep away."}
            for i in range(lines)]


def job_row(services: Services, job_id: str) -> Job:
    with services.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def unit_rows(services: Services, job_id: str) -> int:
    with services.db.session() as session:
        return session.query(JobUnit).filter(JobUnit.job_id == job_id).count()


def wait_finished(services: Services, job_id: str, timeout: float) -> Job:
    """The job once it is finished."""
    def finished() -> Job | None:
        job = job_row(services, job_id)
        return job if job.status in FINISHED else None
    return wait_for(finished, timeout, f"job {job_id} to finish")


def _stored(root: Path, job_id: str) -> list[str]:
    folders = list((root / "data" / "files").glob(f"*/jobs/{job_id}"))
    assert len(folders) <= 1
    return sorted(str(p.relative_to(folders[0])) for p in folders[0].rglob("*")
                  if p.is_file()) if folders else []


def job_files(root: Path, job_id: str) -> list[str]:
    """The job's result files, relative to its folder (local storage), its line units aside."""
    return [f for f in _stored(root, job_id) if not f.startswith("units/")]


def unit_files(root: Path, job_id: str) -> list[int]:
    """The line index of every stored unit of the job (units/<line>/<take>/line.npz); more
    than one take of a line, or anything else under units/, fails."""
    units = [f.split("/") for f in _stored(root, job_id) if f.startswith("units/")]
    assert all(len(parts) == 4 and parts[3] == "line.npz" for parts in units), units
    indexes = sorted(int(parts[1]) for parts in units)
    assert len(set(indexes)) == len(indexes), units
    return indexes


def expected_files(captions: tuple[str, ...] = ("vtt", "srt", "json"),
                   fmt: str = "wav") -> list[str]:
    return sorted([f"audio.{fmt}", "captions-report.json"] + [f"captions.{c}" for c in captions])
