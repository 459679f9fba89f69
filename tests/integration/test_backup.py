"""Backup while a job renders, restore into an empty service: every speaker's reference and
every finished file come back with the same checksums, and the interrupted job finishes.
SQLite with local files, and PostgreSQL with S3 (moto's server)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.chaos.cluster import add_speakers, dialogue, own_database, wait_for
from voicereel import backup, operations
from voicereel.api.app import create_app
from voicereel.cli import main
from voicereel.db import repo
from voicereel.errors import Conflict
from voicereel.services import Services, build_services
from voicereel.settings import Settings


def _settings(root: Path, database_url: str, s3_endpoint: str | None) -> Settings:
    values: dict[str, Any] = {"data_dir": root, "database_url": database_url,
                              "rate_limit_per_minute": 0, "max_concurrent_jobs": 0,
                              "sweep_interval_seconds": 0.5, "line_threads": 1}
    if s3_endpoint:
        values.update(storage="s3", s3_endpoint_url=s3_endpoint,
                      s3_bucket=f"vr-{uuid.uuid4().hex[:10]}", s3_prefix="svc/")
    return Settings(**values)


@contextmanager
def _service(settings: Settings, key: str | None = None
             ) -> Iterator[tuple[TestClient, Services, str]]:
    services = build_services(settings)
    services.db.migrate()
    services.storage.prepare()
    key = key or operations.create_key(services, "studio")
    try:
        with TestClient(create_app(settings, services)) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, services, key
    finally:
        services.db.dispose()


def _checksums(client: TestClient, job: dict[str, Any]) -> dict[str, str]:
    links = {"audio": job["result"]["audio"], **job["result"]["captions"]}
    return {kind: hashlib.sha256(_download(client, link["url"])).hexdigest()
            for kind, link in links.items()}


def _download(client: TestClient, url: str) -> bytes:
    if url.startswith("http://testserver") or url.startswith("/"):
        response = client.get(url)
    else:  # a presigned S3 URL
        import httpx
        response = httpx.get(url)
    assert response.status_code == 200, url
    return response.content


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"]
        not in ("queued", "running") and j, 240, f"job {job_id}")
    return job


def test_a_backup_taken_while_a_job_renders_restores_whole(
        database_url: str, tmp_path: Path, reference_wavs: dict[str, bytes],
        request: pytest.FixtureRequest) -> None:
    on_postgres = database_url.startswith("postgresql")
    endpoint = None
    if on_postgres:
        request.getfixturevalue("aws_test_credentials")
        endpoint = str(request.getfixturevalue("moto_endpoint"))
    location = (f"s3://backups-{uuid.uuid4().hex[:10]}/nightly" if on_postgres
                else str(tmp_path / "backup"))
    with own_database(database_url) as url_a, own_database(database_url) as url_b:
        if not on_postgres:
            url_a, url_b = (f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
        settings_a = _settings(tmp_path / "a", url_a, endpoint)
        with _service(settings_a) as (client, services, key):
            speakers = add_speakers(client, reference_wavs)
            done = client.post("/v1/synthesize", json={"script": dialogue(speakers, 2)})
            finished = _finished(client, done.json()["job_id"])
            assert finished["status"] == "succeeded"
            before = _checksums(client, finished)
            long_job = client.post("/v1/synthesize",
                                   json={"script": dialogue(speakers, 10, "Later. ")})
            long_id = long_job.json()["job_id"]
            wait_for(lambda: (j := client.get(f"/v1/jobs/{long_id}").json())["status"]
                     == "running" and 2 <= j["units_done"] <= 6, 120, "a job half rendered")
            manifest = backup.backup(services, backup.backup_storage(services, location))
        assert manifest["tables"]["speakers"]["rows"] == 2
        jobs = [json.loads(line) for line in backup.backup_storage(
            services, location).get("db/jobs.jsonl").splitlines()]
        assert {j["id"]: j["status"] for j in jobs}[long_id] == "running"
        units_backed_up = manifest["tables"]["job_units"]["rows"]
        assert 2 + 2 <= units_backed_up < 2 + 10

        settings_b = _settings(tmp_path / "b", url_b, endpoint)
        services_b = build_services(settings_b)
        try:
            restored = backup.restore(services_b, backup.backup_storage(services_b, location))
            assert restored["requeued_jobs"] == 1
            with pytest.raises(Conflict):  # never over data
                backup.restore(services_b, backup.backup_storage(services_b, location))
            with services_b.db.session() as session:
                references = [s.reference_key for s in repo.speakers_by_id(
                    session, jobs[0]["tenant_id"], set(speakers.values())).values()]
            assert len(references) == 2
            for reference in references:  # every speaker plays
                audio, rate = sf.read(io.BytesIO(services_b.storage.get(reference)))
                assert rate >= 16000 and len(audio) / rate > 30
        finally:
            services_b.db.dispose()
        with _service(settings_b, key) as (client, services, _):
            listed = client.get("/v1/speakers").json()["items"]
            assert sorted(s["id"] for s in listed) == sorted(speakers.values())
            again = client.get(f"/v1/jobs/{finished['id']}").json()
            assert _checksums(client, again) == before
            resumed = _finished(client, long_id)
            assert resumed["status"] == "succeeded", resumed
            with services.db.session() as session:
                assert len(repo.unit_keys(session, long_id, 1)) == 10


def test_the_cli_backs_up_and_refuses_to_restore_over_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("VOICEREEL_DATABASE_URL", database)
    monkeypatch.setenv("VOICEREEL_DATA_DIR", str(tmp_path / "data"))
    services = build_services(Settings(database_url=database, data_dir=tmp_path / "data"))
    services.db.migrate()
    operations.create_key(services, "studio")
    services.db.dispose()
    runner = CliRunner()
    made = runner.invoke(main, ["backup", "--to", str(tmp_path / "b")])
    assert made.exit_code == 0, made.output
    assert "backed up" in made.output and (tmp_path / "b" / "manifest.json").is_file()
    refused = runner.invoke(main, ["restore", "--from", str(tmp_path / "b")])
    assert refused.exit_code == 1 and "already holds data" in refused.output
    forced = runner.invoke(main, ["restore", "--from", str(tmp_path / "b"), "--force"])
    assert forced.exit_code == 0, forced.output
