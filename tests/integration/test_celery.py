"""The celery runner on real Redis and real `voicereel worker` processes.

Fan-out across two workers, duplicate messages, the sweep that dispatches a committed but
never published job, and a dead attempt's lines reused by the next one.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import (
    Cluster,
    add_speakers,
    api_client,
    cluster,
    dialogue,
    expected_files,
    job_files,
    job_row,
    unit_files,
    unit_rows,
    wait_finished,
    wait_for,
)
from voicereel import operations
from voicereel.db import repo
from voicereel.db.tables import Job, utcnow
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs import pipeline
from voicereel.jobs.runners.celery.app import RENDER_UNIT, RUN_JOB
from voicereel.jobs.runners.celery.worker import build_worker_context, coordinate
from voicereel.jobs.runners.inline import InlineRunner
from voicereel.services import Services, build_services

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path) -> Cluster:
    with cluster(database_url, tmp_path) as group:
        group.start_worker(wait=False)
        group.start_worker(wait=False)
        for worker in group.workers:
            worker.wait_ready()
        yield group


def _lines_rendered(log: str, job_id: str) -> set[int]:
    return {int(i) for i in re.findall(rf"job {job_id}: line (\d+) rendered", log)}


def test_lines_fan_out_over_two_workers(two_workers: Cluster, reference_wavs: dict[str, bytes],
                                        tenant_name: str) -> None:
    with api_client(two_workers.settings, tenant_name) as (client, services):
        ids = add_speakers(client, reference_wavs)
        script = dialogue(ids, 10)
        r = client.post("/v1/synthesize", json={"script": script})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        progress = []

        def finished() -> bool:
            job = client.get(f"/v1/jobs/{job_id}").json()
            progress.append(job["progress"])
            return job["status"] in ("succeeded", "failed", "canceled")

        wait_for(finished, 180, "the job")
        wait_finished(services, job_id, 30)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert len(set(progress)) > 2  # progress moved line by line, not in one jump

        captions = json.loads(client.get(job["result"]["captions"]["json"]["url"]).content)
        assert [s["text"] for s in captions["segments"]] == [line["text"] for line in script]

        # Every line was rendered once, and by both workers between them.
        per_worker = [_lines_rendered(w.log(), job_id) for w in two_workers.workers]
        assert all(per_worker), per_worker
        assert sorted(i for lines in per_worker for i in lines) == list(range(10))
        # One set of files, and one stored unit (file and row) per line, kept after success.
        assert job_files(two_workers.root, job_id) == expected_files()
        assert unit_files(two_workers.root, job_id) == list(range(10))
        assert unit_rows(services, job_id) == 10


def test_duplicate_messages_and_a_second_run_give_one_result(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    with cluster(database_url, tmp_path) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        group.start_worker()
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        r = client.post("/v1/synthesize", json={"script": dialogue(ids, 4),
                                                "captions": ["json"]})
        job_id = r.json()["job_id"]
        app = client.app.state.runner.dispatcher.app  # type: ignore[attr-defined]
        for _ in range(3):
            app.send_task(RUN_JOB, args=[job_id])
            app.send_task(RENDER_UNIT, args=[job_id, 1])
        job = wait_finished(services, job_id, 120)
        assert job.status == "succeeded" and job.attempts == 1
        files = job_files(group.root, job_id)
        assert files == expected_files(("json",))
        stamps = {f: (next((group.root / "data" / "files").glob(f"*/jobs/{job_id}")) / f)
                  .stat().st_mtime_ns for f in files}

        # Running the job and one of its lines again, by hand, changes nothing.
        ctx = build_worker_context(group.settings, app, services)
        try:
            coordinate(ctx, job_id)
        finally:
            ctx.leases.stop()
        again = job_row(services, job_id)
        assert (again.status, again.attempts, again.finished_at) == (
            "succeeded", 1, job.finished_at)
        plan = pipeline.load_plan(services, job_id)
        assert pipeline.render_unit(services, plan, 2) is None  # finished: nothing is kept
        assert job_files(group.root, job_id) == files
        assert unit_files(group.root, job_id) == [0, 1, 2, 3]
        assert unit_rows(services, job_id) == 4
        folder = next((group.root / "data" / "files").glob(f"*/jobs/{job_id}"))
        assert {f: (folder / f).stat().st_mtime_ns for f in files} == stamps
        with services.db.session() as session:
            assert len(repo.job_files(session, job_id, 1)) == 3  # audio, json, report


def test_sweep_dispatches_a_job_that_was_never_published(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    """A crash between commit and publish: only the row exists; a worker's sweep sends it."""
    with cluster(database_url, tmp_path) as group:
        with api_client(group.settings, tenant_name) as (client, services):
            ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        services = build_services(group.settings)
        try:
            with services.db.session() as session:
                tenant = repo.get_or_create_tenant(session, tenant_name)
            never_started = InlineRunner(services)  # its submit() publishes nothing
            request = SynthesisRequest.model_validate({"script": dialogue(ids, 2)})
            job_id = operations.submit_job(services, never_started, tenant, request).id
            assert job_row(services, job_id).status == "queued"

            group.start_worker()  # no API runs now: the worker's own sweep finds the job
            job = wait_finished(services, job_id, 120)
            assert job.status == "succeeded" and job.attempts == 1
            assert job_files(group.root, job_id) == expected_files()
        finally:
            services.db.dispose()


def _job_held_by(services: Services, tenant_name: str, script: list[dict[str, Any]],
                 owner: str) -> str:
    """A committed job, never published, that `owner` holds with a live lease."""
    with services.db.session() as session:
        tenant = repo.get_or_create_tenant(session, tenant_name)
    request = SynthesisRequest.model_validate({"script": script})
    job_id = operations.submit_job(services, InlineRunner(services), tenant, request).id
    with services.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.lease_owner, job.attempts = "running", owner, 1
        job.lease_expires_at = utcnow() + timedelta(seconds=60)
    return job_id


def test_a_dead_attempts_lines_are_reused(database_url: str, tmp_path: Path,
                                          reference_wavs: dict[str, bytes],
                                          tenant_name: str) -> None:
    with cluster(database_url, tmp_path) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        # An attempt that rendered lines 0 and 1, then died with its lease.
        job_id = _job_held_by(services, tenant_name, dialogue(ids, 4), "dead-host:1:x:y")
        plan = pipeline.load_plan(services, job_id)
        assert pipeline.render_unit(services, plan, 0) and pipeline.render_unit(services, plan, 1)
        assert job_row(services, job_id).units_done == 2
        with services.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.lease_expires_at = utcnow() - timedelta(seconds=1)

        worker = group.start_worker()
        job = wait_finished(services, job_id, 120)
        assert job.status == "succeeded" and job.attempts == 2
        assert _lines_rendered(worker.log(), job_id) == {2, 3}
        assert job_files(group.root, job_id) == expected_files()
        assert unit_files(group.root, job_id) == [0, 1, 2, 3]
        assert unit_rows(services, job_id) == 4


def test_a_line_rendered_after_cancel_leaves_no_file(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    with cluster(database_url, tmp_path) as group, \
            api_client(group.settings, tenant_name) as (client, services):
        ids = add_speakers(client, {"Alice": reference_wavs["Alice"]})
        job_id = _job_held_by(services, tenant_name, dialogue(ids, 3), "someone")
        plan = pipeline.load_plan(services, job_id)
        assert pipeline.render_unit(services, plan, 0)
        assert unit_files(group.root, job_id) == [0]
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert pipeline.render_unit(services, plan, 1) is None
        assert job_files(group.root, job_id) == [] and unit_files(group.root, job_id) == []
