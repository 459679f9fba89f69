"""Deletion that cannot half-happen (hardening item 8).

- With S3 storage unreachable at deletion time (moto's S3 server behind a loopback TCP relay that
  the test stops, then starts again on the same port), deleting a job and a speaker answers
  204 and hides them at once; their files stay marked for removal, and the runner's sweep
  removes them once the store is back.
- A signed download URL of a deleted job answers 404 even while its files still exist.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import Config
from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_job_row, add_speaker_row, caller
from tests.chaos.cluster import free_port
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.db import repo
from voicereel.db.tables import JobFile
from voicereel.services import Services, build_services
from voicereel.settings import Settings
from voicereel.storage import job_prefix, speaker_prefix

pytestmark = pytest.mark.usefixtures("aws_test_credentials")


class Relay:
    """A TCP relay on loopback to `target`: the store's address as the service sees it.

    `stop()` closes the listener and every relayed connection, so the store is unreachable
    (connection refused) until `start()` listens on the same port again.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                self._threads.append(pump)
                pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            source.settimeout(None)
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)


@pytest.fixture
def relay(moto_endpoint: str) -> Iterator[Relay]:
    made = Relay(("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1])))
    made.start()
    yield made
    made.stop()


@pytest.fixture
def s3_app(database_url: str, tmp_path: Path, relay: Relay, tenant_name: str
           ) -> Iterator[tuple[TestClient, Services]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, storage="s3",
                        s3_endpoint_url=f"http://127.0.0.1:{relay.port}",
                        s3_bucket=f"vr-{uuid.uuid4().hex[:12]}", sweep_interval_seconds=0.5,
                        storage_purge_retry_seconds=0.5)
    services = build_services(settings)
    services.db.migrate()
    services.storage.prepare()
    key = operations.create_key(services, tenant_name)
    try:
        with TestClient(create_app(settings, services)) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, services
    finally:
        services.db.dispose()


def _objects(moto_endpoint: str, bucket: str, prefix: str) -> list[str]:
    """Object keys under `prefix`, asked of moto directly (not through the relay)."""
    s3: Any = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                           config=Config(retries={"max_attempts": 1}))
    page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in page.get("Contents", [])]


def test_deletion_while_the_store_is_down_finishes_when_it_is_back(
        s3_app: tuple[TestClient, Services], relay: Relay, moto_endpoint: str) -> None:
    client, services = s3_app
    tenant = caller(services, client.headers["Authorization"].split()[1])[1]
    job_id = add_job_row(services, tenant.id, status="succeeded")
    speaker_id = add_speaker_row(services, tenant.id)
    prefixes = [job_prefix(tenant.id, job_id), speaker_prefix(tenant.id, speaker_id)]
    for prefix in prefixes:
        for name in ("audio.wav", "captions.vtt", "units/0/line.npz"):
            services.storage.put(f"{prefix}/{name}", b"private bytes", "application/octet-stream")
    bucket = services.settings.s3_bucket
    stored = [f"{p}/" for p in prefixes]
    assert all(len(_objects(moto_endpoint, bucket, p)) == 3 for p in stored)

    relay.stop()  # the store is unreachable from the service from here on
    started = time.monotonic()
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert client.delete(f"/v1/speakers/{speaker_id}").status_code == 204
    print(f"\ntwo deletions answered in {time.monotonic() - started:.1f} s with the store down")
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/v1/speakers/{speaker_id}").status_code == 404
    time.sleep(2)  # four sweeps while the store is down: the files stay, marked for removal
    assert all(len(_objects(moto_endpoint, bucket, p)) == 3 for p in stored)
    with services.db.session() as session:
        pending = repo.pending_storage_purges(session)
    assert sorted(p.prefix for p in pending) == sorted(prefixes)
    assert all(p.last_error for p in pending), [(p.prefix, p.last_error) for p in pending]

    relay.start()
    back = time.monotonic()
    deadline = back + 60
    while any(_objects(moto_endpoint, bucket, p) for p in stored):
        assert time.monotonic() < deadline, "the sweep never removed the files"
        time.sleep(0.2)
    print(f"files removed {time.monotonic() - back:.1f} s after the store came back")
    with services.db.session() as session:
        assert repo.pending_storage_purges(session) == []


@pytest.fixture
def local_app(database_url: str, tmp_path: Path, tenant_name: str
              ) -> Iterator[tuple[TestClient, Services]]:
    services = build_services(Settings(data_dir=tmp_path / "data", database_url=database_url,
                                       sweep_interval_seconds=0.5))
    services.db.migrate()
    key = operations.create_key(services, tenant_name)
    try:
        with TestClient(create_app(services.settings, services)) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, services
    finally:
        services.db.dispose()


def test_signed_url_of_a_deleted_job_stops_working_while_its_files_remain(
        local_app: tuple[TestClient, Services]) -> None:
    client, services = local_app
    tenant = caller(services, client.headers["Authorization"].split()[1])[1]
    job_id = add_job_row(services, tenant.id, status="running")
    key = f"{job_prefix(tenant.id, job_id)}/audio.wav"
    data = b"RIFF private audio"
    services.storage.put(key, data, "audio/wav")
    with services.db.session() as session:
        assert repo.finish_job(session, job_id, "elsewhere", 1, [JobFile(
            job_id=job_id, kind="audio", key=key, content_type="audio/wav",
            size_bytes=len(data))], audio_seconds=1.0, characters=5, engine="piper")
    url = client.get(f"/v1/jobs/{job_id}").json()["result"]["audio"]["url"]
    response = client.get(url)
    assert response.status_code == 200 and response.content == data

    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    # The files of a deleted job can outlive it (a purge being retried, a backup restored):
    # put the file back where the signed URL points.
    services.storage.put(key, data, "audio/wav")
    response = client.get(url)
    print(f"\nsigned URL of the deleted job, file present: {response.status_code}")
    assert response.status_code in (404, 410), response.text
    assert data not in response.content
