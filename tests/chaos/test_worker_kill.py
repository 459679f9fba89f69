"""kill -9 while jobs render: every job still succeeds, with exactly one set of files."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.chaos.cluster import (
    add_speakers,
    api_client,
    cluster,
    dialogue,
    expected_files,
    job_files,
    job_row,
    wait_finished,
    wait_for,
)
from voicereel.db.tables import Job

pytestmark = pytest.mark.timeout(240)


def _parent_pid(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _worker_of(job: Job) -> int | None:
    """The main process of the worker whose rendering process coordinates the job."""
    if job.status != "running" or not job.lease_owner:
        return None
    try:
        return _parent_pid(int(job.lease_owner.split(":")[1]))
    except FileNotFoundError:
        return None


def test_killing_the_rendering_process_mid_job(chaos_database_url: str, tmp_path: Path,
                                               reference_wavs: dict[str, bytes],
                                               tenant_name: str) -> None:
    with cluster(chaos_database_url, tmp_path) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        workers = [group.start_worker(wait=False), group.start_worker(wait=False)]
        for worker in workers:
            worker.wait_ready()
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        r = client.post("/v1/synthesize", json={"script": dialogue(ids, 24)})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        job = wait_for(lambda: (j := job_row(services, job_id)).units_done >= 3 and j, 120,
                       "lines to be rendered", interval=0.05)
        assert job.status == "running" and job.lease_owner
        coordinator_pid = int(job.lease_owner.split(":")[1])
        assert _parent_pid(coordinator_pid) in {w.proc.pid for w in workers}
        os.kill(coordinator_pid, signal.SIGKILL)

        job = wait_finished(services, job_id, 150)
        assert job.status == "succeeded", job.error
        assert job.attempts == 2
        assert job_files(group.root, job_id) == expected_files()
        body = client.get(f"/v1/jobs/{job_id}").json()
        assert len(client.get(body["result"]["audio"]["url"]).content) > 0


def test_twenty_jobs_around_a_dead_worker(chaos_database_url: str, tmp_path: Path,
                                          reference_wavs: dict[str, bytes],
                                          tenant_name: str) -> None:
    with cluster(chaos_database_url, tmp_path) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        doomed, survivor = group.start_worker(wait=False), group.start_worker(wait=False)
        for worker in (doomed, survivor):
            worker.wait_ready()
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})

        def submit(n: int) -> str:
            r = client.post("/v1/synthesize", json={"script": dialogue(ids, 3, f"Job {n}. "),
                                                    "captions": ["json"]})
            assert r.status_code == 202, r.text
            return str(r.json()["job_id"])

        job_ids = [submit(n) for n in range(10)]
        # The whole worker dies, its rendering process with it, while it holds a job.
        wait_for(lambda: any(_worker_of(job_row(services, i)) == doomed.proc.pid
                             for i in job_ids), 120, "the doomed worker to take a job",
                 interval=0.05)
        doomed.kill()
        job_ids += [submit(n) for n in range(10, 20)]
        group.start_worker()  # the lost machine comes back

        jobs = [wait_finished(services, job_id, 180) for job_id in job_ids]
        lost = [j.id for j in jobs if j.status != "succeeded"]
        duplicated = [j.id for j in jobs
                      if job_files(group.root, j.id) != expected_files(("json",))]
        print(f"chaos: {len(job_ids)} jobs submitted, {len(lost)} lost, "
              f"{len(duplicated)} with other than one set of files, "
              f"{sum(j.attempts > 1 for j in jobs)} taken over after the kill")
        assert lost == [] and duplicated == []
        assert any(j.attempts > 1 for j in jobs)
