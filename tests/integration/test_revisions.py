"""Revisions: fix lines of a finished job and only those lines render; the rest of the master
is the previous revision's, sample for sample, and every later caption moves by exactly the
length the edits changed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.chaos.cluster import add_speakers, api_client, cluster, dialogue, wait_for
from voicereel.db.tables import JobRevision, JobUnit
from voicereel.jobs import units
from voicereel.services import Services

RATE = 24000
# Quiet enough that the true-peak limiter never engages: the master's gain is one constant.
QUIET = {"format": "wav", "sample_rate": RATE, "loudness_lufs": -30, "stems": True}


@contextmanager
def revision_app(runner: str, database_url: str, root: Path,
                 tenant: str) -> Iterator[tuple[TestClient, Services]]:
    with cluster(database_url, root) as group:
        settings = group.settings
        if runner == "inline":
            settings = settings.model_copy(update={"runner": "inline"})
        else:
            group.start_worker(concurrency=2)
        with api_client(settings, tenant) as (client, services):
            yield client, services


def finished(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"]
        not in ("queued", "running") and j, 240, f"job {job_id}")
    assert job["status"] == "succeeded", job
    return job


def download(client: TestClient, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.content


def master_and_captions(client: TestClient, result: dict[str, Any]) -> tuple[np.ndarray,
                                                                            dict[str, Any]]:
    audio, rate = sf.read(io.BytesIO(download(client, result["audio"]["url"])), dtype="float64")
    assert rate == RATE
    return audio, json.loads(download(client, result["captions"]["json"]["url"]))


def samples(seconds: float) -> int:
    return round(seconds * RATE)


def spans(captions: dict[str, Any]) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Every segment's start and end and its words', in samples."""
    return [(samples(s["start"]), samples(s["end"]),
             [(samples(w["start"]), samples(w["end"])) for w in s["words"]])
            for s in captions["segments"]]


def shifted(span: tuple[int, int, list[tuple[int, int]]], by: int) -> tuple[
        int, int, list[tuple[int, int]]]:
    start, end, words = span
    return start + by, end + by, [(a + by, b + by) for a, b in words]


@pytest.mark.parametrize("runner", ["inline", "celery"])
def test_a_revision_renders_only_the_changed_lines(
        runner: str, database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    with revision_app(runner, database_url, tmp_path, tenant_name) as (client, services):
        engine_calls: list[str] = []
        synthesize = services.engine.synthesize

        def counted(text: str, *args: Any, **kwargs: Any) -> Any:
            engine_calls.append(text)
            return synthesize(text, *args, **kwargs)

        services.engine.synthesize = counted  # type: ignore[method-assign]
        script = dialogue(add_speakers(client, reference_wavs), 12)
        r = client.post("/v1/synthesize", json={"script": script, "output": QUIET})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        first = finished(client, job_id)
        assert first["revision"] == 1
        old_master, old_captions = master_and_captions(client, first["result"])
        usage_before = client.get("/v1/usage").json()["totals"]["characters"]
        calls_before = len(engine_calls)

        new_text = "Line five, now said in other words, and a little longer than before."
        r = client.post(f"/v1/jobs/{job_id}/revisions", json={"edits": [
            {"line": 4, "text": new_text}, {"line": 8, "retake": True}, {"delete": 10}]})
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted == {"job_id": job_id, "revision": 2, "status": "queued",
                            "lines_to_render": [4, 8]}
        assert r.headers["Location"] == f"/v1/jobs/{job_id}/revisions/2"
        second = finished(client, job_id)
        assert second["revision"] == 2 and second["units_total"] == 11 + 1  # and assembly

        # exactly two lines rendered: engine calls here, new unit rows on any runner
        if runner == "inline":
            assert len(engine_calls) - calls_before == 2
        with services.db.session() as session:
            rendered = session.scalar(select(func.count()).select_from(JobUnit).where(
                JobUnit.job_id == job_id, JobUnit.revision == 2, JobUnit.rendered_in == 2))
            carried = session.scalar(select(func.count()).select_from(JobUnit).where(
                JobUnit.job_id == job_id, JobUnit.revision == 2, JobUnit.rendered_in == 1))
            archived = session.scalars(select(JobRevision.number).where(
                JobRevision.job_id == job_id)).all()
        assert (rendered, carried, archived) == (2, 9, [1])

        new_master, new_captions = master_and_captions(client, second["result"])
        old, new = spans(old_captions), spans(new_captions)
        assert len(old) == 12 and len(new) == 11

        # lines 0-3 (and the pause after line 3): the old samples times one constant gain
        head = old[4][0]
        assert new[4][0] == head
        gain = float(np.dot(new_master[:head], old_master[:head])
                     / np.dot(old_master[:head], old_master[:head]))
        assert 0.5 < gain < 2.0
        quantum = 1 / 32768  # 16-bit WAV
        assert np.max(np.abs(new_master[:head] - gain * old_master[:head])) <= 2 * quantum

        # every later caption moves by exactly the length the edits changed
        assert new[:4] == old[:4]
        grown_4 = (new[4][1] - new[4][0]) - (old[4][1] - old[4][0])
        for index in (5, 6, 7):
            assert new[index] == shifted(old[index], grown_4)
        assert new[8][0] == old[8][0] + grown_4
        grown_8 = (new[8][1] - new[8][0]) - (old[8][1] - old[8][0])
        assert new[9] == shifted(old[9], grown_4 + grown_8)
        removed_10 = old[11][0] - old[10][0]  # line 10 and the pause after it
        assert new[10] == shifted(old[11], grown_4 + grown_8 - removed_10)
        assert [s["text"] for s in new_captions["segments"]] == (
            [line["text"] for line in script[:4]] + [new_text]
            + [line["text"] for line in script[5:10]] + [script[11]["text"]])
        # the carried lines sound as before: line 11 (now 10) sample for sample, at the gain
        old_11 = old_master[old[11][0]:old[11][1]]
        new_10 = new_master[new[10][0]:new[10][1]]
        assert np.max(np.abs(new_10 - gain * old_11)) <= 2 * quantum

        # stems follow: one per speaker, as long as the new master, summing to it
        stems = [sf.read(io.BytesIO(download(client, link["url"])), dtype="float64")[0]
                 for link in second["result"]["stems"].values()]
        assert len(stems) == 2 and all(len(stem) == len(new_master) for stem in stems)
        assert np.max(np.abs(sum(stems) - new_master)) <= 3 * quantum

        # revision 1 keeps its URLs and its own files
        revisions = client.get(f"/v1/jobs/{job_id}/revisions").json()["revisions"]
        assert [(v["number"], v["latest"], v["status"]) for v in revisions] == [
            (1, False, "succeeded"), (2, True, "succeeded")]
        assert revisions[1]["edits"] == [{"line": 4, "text": new_text},
                                         {"line": 8, "retake": True}, {"delete": 10}]
        assert len(revisions[0]["request"]["script"]) == 12
        assert len(revisions[1]["request"]["script"]) == 11
        again, _ = master_and_captions(client, first["result"])
        assert np.array_equal(again, old_master)
        one = client.get(f"/v1/jobs/{job_id}/revisions/1").json()
        assert one["files_kept"] and one["result"]["audio"]["url"]
        old_again, _ = master_and_captions(client, one["result"])
        assert np.array_equal(old_again, old_master)
        assert client.get(f"/v1/jobs/{job_id}/revisions/3").status_code == 404

        # billed: the two rendered lines only
        usage_after = client.get("/v1/usage").json()["totals"]["characters"]
        assert usage_after - usage_before == len(new_text) + len(script[8]["text"])
        assert revisions[1]["characters"] == len(new_text) + len(script[8]["text"])


def unit_audio(services: Services, job_id: str, revision: int, line: int) -> np.ndarray:
    with services.db.session() as session:
        key = session.scalars(select(JobUnit.key).where(
            JobUnit.job_id == job_id, JobUnit.revision == revision,
            JobUnit.index == line)).one()
    return units.unpack_unit(services.storage.get(key)).audio


def stored_files(root: Path) -> list[Path]:
    return [p for p in (root / "data" / "files").rglob("*") if p.is_file()]


def test_seeds_retention_idempotency_and_deletion(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        tenant_name: str) -> None:
    with cluster(database_url, tmp_path, VOICEREEL_REVISIONS_KEPT="2") as group:
        inline = group.settings.model_copy(update={"runner": "inline"})
        with api_client(inline, tenant_name) as (client, services):
            speakers = add_speakers(client, reference_wavs)
            script = dialogue(speakers, 3)
            job_id = client.post("/v1/synthesize", json={"script": script}).json()["job_id"]
            busy = client.post(f"/v1/jobs/{job_id}/revisions",
                               json={"edits": [{"line": 0, "retake": True}]})
            assert busy.status_code == 409 and busy.json()["type"].endswith("/job-busy")
            first = finished(client, job_id)

            bad = client.post(f"/v1/jobs/{job_id}/revisions", json={"edits": [
                {"line": 7, "text": "No such line."}, {"line": 1, "speaker_id": "spk_nobody"}]})
            assert bad.status_code == 422
            assert [e["loc"] for e in bad.json()["errors"]] == [["body", "edits", 0]]
            unknown = client.post(f"/v1/jobs/{job_id}/revisions", json={"edits": [
                {"line": 1, "speaker_id": "spk_nobody"}]})
            assert unknown.status_code == 422, unknown.text

            # the same seed renders the same take; a retake without one, a new take
            seeded = {"edits": [{"line": 1, "retake": True, "seed": 12345}]}
            key = {"Idempotency-Key": "revise-once"}
            r2 = client.post(f"/v1/jobs/{job_id}/revisions", json=seeded, headers=key)
            replay = client.post(f"/v1/jobs/{job_id}/revisions", json=seeded, headers=key)
            assert r2.status_code == replay.status_code == 202
            assert replay.json() == r2.json() and replay.headers["Idempotent-Replayed"] == "true"
            finished(client, job_id)
            first_take = unit_audio(services, job_id, 1, 1)
            rev1_audio = first["result"]["audio"]["url"]
            assert client.get(rev1_audio).status_code == 200
            assert client.post(f"/v1/jobs/{job_id}/revisions",
                               json=seeded).json()["revision"] == 3
            third = finished(client, job_id)
            assert third["revision"] == 3
            assert np.array_equal(unit_audio(services, job_id, 2, 1),
                                  unit_audio(services, job_id, 3, 1))
            assert not np.array_equal(first_take, unit_audio(services, job_id, 2, 1))
            takes = client.get(f"/v1/jobs/{job_id}/revisions/3").json()["takes"]
            assert [(t["line"], t["rendered_in"]) for t in takes] == [(0, 1), (1, 3), (2, 1)]
            assert takes[1]["seed"] == 12345 and isinstance(takes[0]["seed"], int)

            assert client.get(rev1_audio).status_code == 404  # revisions 2 and 3 are kept
            r4 = client.post(f"/v1/jobs/{job_id}/revisions",
                             json={"edits": [{"line": 1, "retake": True}]})
            assert r4.status_code == 202
            finished(client, job_id)
            revisions = client.get(f"/v1/jobs/{job_id}/revisions").json()["revisions"]
            assert [(v["number"], v["files_kept"]) for v in revisions] == [
                (1, False), (2, False), (3, True), (4, True)]
            assert revisions[3]["takes"][1]["seed"] not in (None, 12345)
            for dropped in revisions[:2]:  # request and captions only
                assert dropped["result"] is None and dropped["takes"] == []
                assert set(dropped["captions"]) == {"vtt", "srt", "json", "report"}
                assert len(dropped["request"]["script"]) == 3
                assert client.get(dropped["captions"]["vtt"]["url"]).status_code == 200
            # units: the three of revision 1 minus its line 1, and the takes of revisions 3, 4
            with services.db.session() as session:
                keys = set(session.scalars(select(JobUnit.key).where(
                    JobUnit.job_id == job_id)))
            on_disk = {str(p.relative_to(tmp_path / "data" / "files"))
                       for p in stored_files(tmp_path) if p.name == "line.npz"}
            assert on_disk == keys and len(keys) == 4

            assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
            assert client.get(f"/v1/jobs/{job_id}/revisions").status_code == 404
            assert client.get(f"/v1/jobs/{job_id}/revisions/4").status_code == 404
            assert not [p for p in stored_files(tmp_path) if "/jobs/" in str(p)]
            with services.db.session() as session:
                assert session.scalar(select(func.count()).select_from(JobUnit).where(
                    JobUnit.job_id == job_id)) == 0
