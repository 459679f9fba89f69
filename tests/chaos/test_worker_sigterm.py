"""SIGTERM, as Kubernetes sends it before a pod goes: the worker finishes what it renders.

deploy/kubernetes gives worker pods `terminationGracePeriodSeconds` for this; the test waits
no longer than that for the worker to finish the job it holds and exit by itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chaos.cluster import (
    add_speakers,
    api_client,
    cluster,
    dialogue,
    expected_files,
    job_files,
    job_row,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)
WORKER_MANIFEST = Path(__file__).resolve().parents[2] / "deploy/kubernetes/base/worker.yaml"


def _grace_seconds() -> int:
    deployment = next(doc for doc in yaml.safe_load_all(WORKER_MANIFEST.read_text())
                      if doc["kind"] == "Deployment")
    return int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def test_sigterm_lets_the_running_job_finish_on_the_same_worker(
        chaos_database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    with cluster(chaos_database_url, tmp_path) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        worker = group.start_worker()
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        r = client.post("/v1/synthesize", json={"script": dialogue(ids, 12)})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        wait_for(lambda: (j := job_row(services, job_id)).status == "running"
                 and j.units_done >= 1, 120, "the job to be rendering", interval=0.05)

        worker.proc.terminate()  # SIGTERM to the main process, as the kubelet sends it
        at_signal = job_row(services, job_id)
        assert worker.proc.wait(timeout=_grace_seconds()) == 0, worker.log()
        assert "Warm shutdown" in worker.log()
        assert at_signal.status == "running" and at_signal.units_done < 12  # work was left

        job = job_row(services, job_id)
        # Finished here before the worker left: no second attempt, no other worker.
        assert job.status == "succeeded", (job.status, job.error, worker.log())
        assert job.attempts == 1
        assert job.units_done == 12
        assert job_files(group.root, job_id) == expected_files()
