"""One job path: the same job on the inline runner and on Celery workers gives the same
result, and both keep one stored unit per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.chaos.cluster import (
    add_speakers,
    api_client,
    cluster,
    dialogue,
    expected_files,
    job_files,
    unit_files,
    unit_rows,
    wait_for,
)
from voicereel.db.tables import Job
from voicereel.jobs import pipeline, units
from voicereel.jobs.spool import LineSpool
from voicereel.services import Services

# No noise in piper: a line renders to the same samples wherever it renders.
SAME_EVERY_TIME = {"VOICEREEL_PIPER_NOISE_SCALE": "0", "VOICEREEL_PIPER_NOISE_W_SCALE": "0"}


def _render(client: TestClient, services: Services, root: Path,
            script: list[dict[str, Any]]) -> dict[str, Any]:
    r = client.post("/v1/synthesize", json={"script": script})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"]
                   not in ("queued", "running") and j, 180, "the job")
    assert job["status"] == "succeeded", job
    assert job_files(root, job_id) == expected_files()
    assert unit_files(root, job_id) == list(range(len(script)))
    assert unit_rows(services, job_id) == len(script)
    return dict(json.loads(client.get(job["result"]["captions"]["json"]["url"]).content))


def test_the_same_job_on_both_runners(database_url: str, tmp_path: Path,
                                      reference_wavs: dict[str, bytes],
                                      tenant_name: str) -> None:
    with cluster(database_url, tmp_path, **SAME_EVERY_TIME) as group:
        inline = group.settings.model_copy(update={"runner": "inline"})
        with api_client(inline, tenant_name) as (client, services):
            script = dialogue(add_speakers(client, reference_wavs), 6)
            on_inline = _render(client, services, group.root, script)
        group.start_worker(concurrency=2)
        with api_client(group.settings, tenant_name) as (client, services):
            on_celery = _render(client, services, group.root, script)

    def boundaries(captions: dict[str, Any]) -> list[tuple[float, float]]:
        return [(s["start"], s["end"]) for s in captions["segments"]]

    assert len(on_inline["segments"]) == 6
    assert boundaries(on_celery) == boundaries(on_inline)
    assert on_celery == on_inline


def test_a_units_seed_renders_its_line_again_sample_for_sample(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    # piper's noise on (the default), so without the seed every rendering differs
    with cluster(database_url, tmp_path) as group:
        inline = group.settings.model_copy(update={"runner": "inline"})
        with api_client(inline, tenant_name) as (client, services):
            script = dialogue(add_speakers(client, reference_wavs), 2)
            script[1]["text"] = "A first piece. [pause:300ms] And a second one, at 3 pm."
            _render(client, services, group.root, script)
            with services.db.session() as session:
                job_id = session.scalars(select(Job.id)).one()
            plan = pipeline.load_plan(services, job_id)
            with LineSpool() as spool:
                keys = pipeline.JobRun(services, plan, "test", 0.0, spool).unit_keys()
            for index in range(len(script)):
                stored = units.unpack_unit(services.storage.get(keys[index]))
                seed = stored.meta["seed"]
                assert isinstance(seed, int)
                again = pipeline.render_line(services, plan, index, seed=seed)
                assert again.meta["seed"] == seed
                assert np.array_equal(again.audio, stored.audio)
                assert again.words == stored.words
                other = pipeline.render_line(services, plan, index, seed=seed + 1)
                assert (len(other.audio) != len(stored.audio)
                        or not np.allclose(other.audio, stored.audio))
            # a caption word whose spoken form differs carries it, through the stored unit
            said = {w.text: w.spoken for w in units.unpack_unit(
                services.storage.get(keys[1])).words}
            assert said["3"] == "three" and said["pm."] == "p m." and said["second"] is None
