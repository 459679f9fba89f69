"""kill -9 the API while clients submit, start it again: no accepted job is lost."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.chaos.cluster import (
    Cluster,
    cluster,
    dialogue,
    expected_files,
    free_port,
    job_files,
    wait_finished,
    wait_for,
)
from voicereel import operations
from voicereel.db import repo
from voicereel.db.tables import Job
from voicereel.services import build_services

pytestmark = pytest.mark.timeout(240)
JOBS = 12


@contextmanager
def api_process(group: Cluster, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = open(group.root / f"serve-{port}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "voicereel", "serve", "--port", str(port)],
                            env=group.env, stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        assert proc.poll() is None, "the API exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        except httpx.TransportError:
            return False
    try:
        wait_for(ready, 120, "the API to be ready", interval=0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()


def test_api_killed_and_restarted_under_load(chaos_database_url: str, tmp_path: Path,
                                             reference_wavs: dict[str, bytes],
                                             tenant_name: str) -> None:
    with cluster(chaos_database_url, tmp_path) as group:
        for worker in (group.start_worker(wait=False), group.start_worker(wait=False)):
            worker.wait_ready()
        services = build_services(group.settings)
        key = operations.create_key(services, tenant_name)
        port = free_port()
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                            headers={"Authorization": f"Bearer {key}"})
        accepted: list[str] = []
        refused = 0
        done = threading.Event()

        def submit_until_done(speaker_id: str) -> None:
            nonlocal refused
            deadline = time.monotonic() + 150
            while len(accepted) < JOBS and time.monotonic() < deadline:
                body = {"script": dialogue({"Alice": speaker_id}, 2, f"Job {len(accepted)}. "),
                        "captions": ["json"]}
                try:
                    r = http.post("/v1/synthesize", json=body)
                    if r.status_code == 202:
                        accepted.append(r.json()["job_id"])
                        continue
                except httpx.TransportError:
                    pass  # the API is down: this submission was not accepted
                refused += 1
                time.sleep(0.2)
            done.set()

        try:
            with api_process(group, port) as api:
                r = http.post("/v1/speakers", data={"name": "Alice"},
                              files={"audio": ("a.wav", reference_wavs["Alice"], "audio/wav")})
                assert r.status_code == 201, r.text
                client = threading.Thread(target=submit_until_done, args=(r.json()["id"],))
                client.start()
                wait_for(lambda: len(accepted) >= 5, 60, "jobs to be accepted", interval=0.02)
                api.kill()  # kill -9, in the middle of the submissions
                api.wait(timeout=10)
            with api_process(group, port):
                client.join(timeout=170)
                assert done.is_set() and len(accepted) == JOBS
                jobs = [wait_finished(services, job_id, 150) for job_id in accepted]
            with services.db.session() as session:
                tenant = repo.get_or_create_tenant(session, tenant_name)
                every_row = list(session.query(Job).filter(Job.tenant_id == tenant.id))
            lost = [job.id for job in jobs if job.status != "succeeded"]
            duplicated = [job.id for job in jobs
                          if job_files(group.root, job.id) != expected_files(("json",))]
            print(f"chaos: API killed and restarted; {len(accepted)} jobs accepted, "
                  f"{refused} submissions refused while it was down, {len(lost)} lost, "
                  f"{len(duplicated)} with other than one set of files")
            assert lost == [] and duplicated == []
            # A job committed just before the kill but never answered runs all the same.
            assert all(wait_finished(services, row.id, 60).status == "succeeded"
                       for row in every_row)
        finally:
            http.close()
            services.db.dispose()
