"""Redis goes away and comes back empty: no accepted job is lost.

While the broker is down the API still accepts jobs (202): the row is committed and the sweep
publishes it once Redis answers again. A job already running finishes without the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import (
    RedisServer,
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

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_jobs_survive_a_redis_restart(chaos_database_url: str, tmp_path: Path,
                                      redis_server: RedisServer,
                                      reference_wavs: dict[str, bytes],
                                      tenant_name: str) -> None:
    with cluster(chaos_database_url, tmp_path, broker_url=redis_server.url) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        group.start_worker()
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        runner = client.app.state.runner  # type: ignore[attr-defined]
        r = client.post("/v1/synthesize", json={"script": dialogue(ids, 12)})
        assert r.status_code == 202, r.text
        running = r.json()["job_id"]
        wait_for(lambda: job_row(services, running).units_done >= 1, 120,
                 "the first job to render", interval=0.05)

        redis_server.stop()
        assert not runner.ready()
        assert client.get("/readyz").status_code == 503  # steer new clients elsewhere
        during = []
        for n in range(3):
            r = client.post("/v1/synthesize", json={"script": dialogue(ids, 2, f"Job {n}. ")})
            assert r.status_code == 202, r.text  # accepted; dispatched once Redis is back
            during.append(r.json()["job_id"])

        # The job that was rendering needs no broker to finish; the new ones wait.
        assert wait_finished(services, running, 120).status == "succeeded"
        assert [job_row(services, job_id).status for job_id in during] == ["queued"] * 3

        redis_server.start()  # empty: every message and marker is gone
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
        jobs = [wait_finished(services, job_id, 150) for job_id in [running, *during]]
        lost = [job.id for job in jobs if job.status != "succeeded"]
        duplicated = [job.id for job in jobs if job_files(group.root, job.id) != expected_files()]
        print(f"chaos: Redis restarted empty; {len(jobs)} jobs accepted, {len(lost)} lost, "
              f"{len(duplicated)} with other than one set of files")
        assert lost == [] and duplicated == []
