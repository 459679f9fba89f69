"""S3 storage against moto's S3 server (a separate process on loopback), alone and under the API.

moto (5.2) does not enforce the expiry of presigned URLs, so expiry is checked on the URL itself:
the signed query names the TTL setting and the signing time.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.chaos.cluster import free_port
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.db import repo
from voicereel.errors import NotFound
from voicereel.services import Services, build_services
from voicereel.settings import Settings
from voicereel.storage import job_prefix, speaker_prefix
from voicereel.storage.s3 import S3Storage

pytestmark = pytest.mark.usefixtures("aws_test_credentials")


def _s3_settings(endpoint: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data", "storage": "s3", "s3_endpoint_url": endpoint,
        "s3_bucket": f"vr-{uuid.uuid4().hex[:12]}", "s3_prefix": "svc/"}
    return Settings(**{**values, **overrides})


@pytest.fixture
def storage(moto_endpoint: str, tmp_path: Path) -> S3Storage:
    store = S3Storage(_s3_settings(moto_endpoint, tmp_path))
    store.prepare()
    return store


def _keys(store: S3Storage, prefix: str = "") -> set[str]:
    paginator = store._client.get_paginator("list_objects_v2")
    return {item["Key"] for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix)
            for item in page.get("Contents", [])}


def test_objects_round_trip_under_the_prefix(storage: S3Storage) -> None:
    storage.put("t1/jobs/j1/audio.wav", b"first", "audio/wav")
    storage.put("t1/jobs/j1/audio.wav", b"second", "audio/wav")  # a retry overwrites
    assert storage.get("t1/jobs/j1/audio.wav") == b"second"
    assert storage.exists("t1/jobs/j1/audio.wav")
    assert not storage.exists("t1/jobs/j1/captions.vtt")
    with pytest.raises(NotFound):
        storage.get("t1/jobs/j1/captions.vtt")
    assert _keys(storage) == {"svc/t1/jobs/j1/audio.wav"}
    head = storage._client.head_object(Bucket=storage.bucket, Key="svc/t1/jobs/j1/audio.wav")
    assert head["ContentType"] == "audio/wav"


def test_a_large_file_is_stored_from_a_file_in_parts(storage: S3Storage, tmp_path: Path) -> None:
    body = os.urandom(9 * 1024 * 1024)  # past boto3's 8 MB multipart threshold
    spool = tmp_path / "master.wav"
    spool.write_bytes(body)
    with spool.open("rb") as source:
        storage.put_file("t1/jobs/j1/audio.wav", source, "audio/wav")
    assert storage.get("t1/jobs/j1/audio.wav") == body
    head = storage._client.head_object(Bucket=storage.bucket, Key="svc/t1/jobs/j1/audio.wav")
    assert head["ContentType"] == "audio/wav" and "-" in head["ETag"]  # a multipart upload


def test_delete_prefix_pages_through_every_object_and_spares_neighbours(
        storage: S3Storage) -> None:
    storage.page_size = 7  # several list-and-delete rounds without thousands of objects
    doomed = [f"t1/jobs/j1/units/{i}.wav" for i in range(23)] + ["t1/jobs/j1/audio.wav"]
    kept = ["t1/jobs/j10/audio.wav", "t1/jobs/j1.wav", "t2/jobs/j1/audio.wav"]
    for key in doomed + kept:
        storage.put(key, b"x", "audio/wav")
    storage.delete_prefix("t1/jobs/j1")
    assert _keys(storage) == {f"svc/{key}" for key in kept}
    storage.delete_prefix("t1/jobs/j1")  # nothing left to delete is no error


def test_presigned_url_downloads_with_its_name_and_carries_the_ttl(storage: S3Storage) -> None:
    storage.put("t1/jobs/j1/captions.vtt", b"WEBVTT\n", "text/vtt")
    before = datetime.now(UTC).replace(microsecond=0)
    url = storage.url("t1/jobs/j1/captions.vtt", 120, "j1-captions.vtt")
    after = datetime.now(UTC)
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    assert response.content == b"WEBVTT\n"
    assert response.headers["content-type"] == "text/vtt"
    assert response.headers["content-disposition"] == 'attachment; filename="j1-captions.vtt"'
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= after
    odd = httpx.get(storage.url("t1/jobs/j1/captions.vtt", 120, 'Ann "A" Lee.vtt'))
    assert odd.headers["content-disposition"] == 'attachment; filename="Ann__A__Lee.vtt"'
    # Another key under the same signature is refused: the URL grants one object only.
    other = url.replace("captions.vtt", "audio.wav", 1)
    assert httpx.get(other).status_code in (403, 404)


def test_urls_are_signed_for_the_public_endpoint(moto_endpoint: str, tmp_path: Path) -> None:
    public = moto_endpoint.replace("127.0.0.1", "localhost")
    store = S3Storage(_s3_settings(moto_endpoint, tmp_path, s3_public_endpoint_url=public))
    store.prepare()
    store.put("t1/speakers/s1/reference.wav", b"RIFF", "audio/wav")
    url = store.url("t1/speakers/s1/reference.wav", 60, "reference.wav")
    assert url.startswith(public + "/")
    assert httpx.get(url).content == b"RIFF"


def test_bucket_creation_and_readiness(moto_endpoint: str, tmp_path: Path) -> None:
    store = S3Storage(_s3_settings(moto_endpoint, tmp_path, s3_region="eu-west-1"))
    assert not store.ready()  # no bucket yet
    store.prepare()
    store.prepare()  # idempotent
    assert store.ready()
    location = store._client.get_bucket_location(Bucket=store.bucket)["LocationConstraint"]
    assert location == "eu-west-1"
    unreachable = S3Storage(_s3_settings(f"http://127.0.0.1:{free_port()}", tmp_path))
    assert not unreachable.ready()


# --- through the API ---------------------------------------------------------------------------


@pytest.fixture
def s3_services(database_url: str, moto_endpoint: str, tmp_path: Path) -> Iterator[Services]:
    settings = _s3_settings(moto_endpoint, tmp_path, database_url=database_url,
                            max_upload_bytes=4 * 1024 * 1024, sweep_interval_seconds=0.5)
    services = build_services(settings)
    services.db.migrate()
    assert isinstance(services.storage, S3Storage)
    services.storage.prepare()
    yield services
    services.db.dispose()


def _wait_for(client: TestClient, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_job_files_live_in_s3_and_go_with_the_job(
        s3_services: Services, tenant_name: str, reference_wavs: dict[str, bytes]) -> None:
    store = s3_services.storage
    assert isinstance(store, S3Storage)
    key = operations.create_key(s3_services, tenant_name)
    with TestClient(create_app(s3_services.settings, s3_services)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert client.get("/readyz").json()["checks"]["storage"] is True
        r = client.post("/v1/speakers", data={"name": "Alice"},
                        files={"audio": ("ref.wav", reference_wavs["Alice"], "audio/wav")})
        assert r.status_code == 201, r.text
        speaker_id = r.json()["id"]
        r = client.post("/v1/synthesize", json={
            "script": [{"speaker_id": speaker_id, "text": "Stored in a bucket."}],
            "output": {"format": "wav"}, "captions": ["vtt", "json"]})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        job = _wait_for(client, job_id)
        assert job["status"] == "succeeded", job

        links = [job["result"]["audio"], *job["result"]["captions"].values()]
        assert len(links) == 4  # audio, vtt, json and the caption report
        for link in links:
            assert link["url"].startswith(s3_services.settings.s3_endpoint_url + "/")
            query = parse_qs(urlsplit(link["url"]).query)
            assert query["X-Amz-Expires"] == [str(s3_services.settings.url_ttl_seconds)]
            download = httpx.get(link["url"])  # no API key: the URL alone grants access
            assert download.status_code == 200, download.text
            assert download.headers["content-type"].startswith(link["content_type"])
            assert len(download.content) == link["size_bytes"]
            assert f'filename="{job_id}-' in download.headers["content-disposition"]
        assert httpx.get(job["result"]["audio"]["url"]).content[:4] == b"RIFF"

        with s3_services.db.session() as session:
            tenant_id = repo.get_or_create_tenant(session, tenant_name).id
        job_keys = _keys(store, f"svc/{job_prefix(tenant_id, job_id)}/")
        assert {k.rsplit("/", 1)[-1] for k in job_keys} >= {"audio.wav", "captions.vtt",
                                                             "captions.json"}
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert _keys(store, f"svc/{job_prefix(tenant_id, job_id)}/") == set()
        # S3 answers 403 rather than 404 for a missing key to a reader who may not list.
        assert httpx.get(job["result"]["audio"]["url"]).status_code in (403, 404)

        reference = f"svc/{speaker_prefix(tenant_id, speaker_id)}/reference.wav"
        assert reference in _keys(store)
        assert client.delete(f"/v1/speakers/{speaker_id}").status_code == 204
        assert _keys(store) == set()
