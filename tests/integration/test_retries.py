"""A passing store failure is retried, not fatal: the job goes back to the queue keeping its
line units, and the next attempt assembles them without rendering again.

The store is moto's S3 server behind a loopback proxy that answers 503 SlowDown, as S3 does
under load, to the first few uploads of the job's master.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_s3 import _s3_settings
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.services import build_services

pytestmark = pytest.mark.usefixtures("aws_test_credentials")

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyS3Proxy:
    """Forwards to S3; the first `failures` PUTs of a key ending in `fail_suffix` get a 503."""

    def __init__(self, upstream: str, fail_suffix: str, failures: int) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_suffix = fail_suffix
        self.failures_left = failures
        self.puts: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                if self.command == "PUT":
                    with proxy._lock:
                        proxy.puts.append(path)
                        failing = path.endswith(proxy.fail_suffix) and proxy.failures_left > 0
                        proxy.failures_left -= failing
                    if failing:
                        self.send_response(503)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(SLOW_DOWN)))
                        self.end_headers()
                        self.wfile.write(SLOW_DOWN)
                        return
                conn = http.client.HTTPConnection(proxy.upstream.hostname or "127.0.0.1",
                                                  proxy.upstream.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body,
                                 headers={k: v for k, v in self.headers.items()})
                    answer = conn.getresponse()
                    content = answer.read()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("content-length", "transfer-encoding",
                                                "connection"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def flaky_store(moto_endpoint: str) -> Iterator[FlakyS3Proxy]:
    # boto3 tries each request three times itself; four refusals outlast that.
    proxy = FlakyS3Proxy(moto_endpoint, "/audio.wav", failures=4)
    yield proxy
    proxy.stop()


def test_a_passing_503_is_retried_with_the_units_kept(
        flaky_store: FlakyS3Proxy, database_url: str, tmp_path: Path, tenant_name: str,
        reference_wavs: dict[str, bytes]) -> None:
    settings = _s3_settings(flaky_store.url, tmp_path, database_url=database_url,
                            sweep_interval_seconds=0.5, max_concurrent_jobs=0)
    services = build_services(settings)
    services.db.migrate()
    services.storage.prepare()
    key = operations.create_key(services, tenant_name)
    try:
        with TestClient(create_app(settings, services)) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            r = client.post("/v1/speakers", data={"name": "Alice"},
                            files={"audio": ("ref.wav", reference_wavs["Alice"], "audio/wav")})
            assert r.status_code == 201, r.text
            script = [{"speaker_id": r.json()["id"], "text": f"Line {i} of the take."}
                      for i in range(3)]
            job_id = client.post("/v1/synthesize", json={"script": script}).json()["job_id"]

            seen_queued_again = False
            deadline = time.monotonic() + 180
            while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
                assert job["status"] in ("queued", "running"), job
                if job["status"] == "queued" and job["attempts"] == 1:
                    seen_queued_again = True  # put back, saying why, until its retry time
                    assert "storage" in (job["error"] or ""), job
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
    finally:
        services.db.dispose()
    assert seen_queued_again
    assert job["attempts"] == 2 and job["error"] is None
    assert flaky_store.failures_left <= 0
    unit_puts = [p for p in flaky_store.puts if "/units/" in p]
    assert len(unit_puts) == 3  # the second attempt rendered nothing again
