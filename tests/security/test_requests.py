"""Hardening of request handling (issue 11, items 4 and 6), against a real `voicereel serve`.

Hostile inputs are made here and sent to loopback only, bounded in count and size. Time bounds
are liveness bounds (generous, as the issue states them); the measured figures are printed.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from tests.api.trust_helpers import add_speaker_row, caller, problem
from tests.conftest import database_backends, postgres_schema
from tests.serve import voicereel_serve
from voicereel import operations
from voicereel.auth import signing
from voicereel.services import Services, build_services
from voicereel.settings import SECRET_FILE_NAME, Settings
from voicereel.storage import speaker_prefix
from voicereel.storage.local import LocalStorage

MiB = 1024 * 1024


@dataclass
class Server:
    base_url: str
    pid: int
    data_dir: Path
    services: Services  # on the server's database and data dir: keys and files only

    def key(self, **options: bool) -> tuple[str, str | None]:
        return operations.create_key_with_options(self.services, f"t-{uuid.uuid4().hex[:10]}",
                                                  **options)


@pytest.fixture(scope="module", params=database_backends())
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"requests-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            database_url = stack.enter_context(
                postgres_schema(str(request.getfixturevalue("postgres_url"))))
        else:
            database_url = f"sqlite:///{root / 'voicereel.db'}"
        data_dir = root / "data"
        # ready: migrated, and the engine loaded (its memory is in the baseline)
        with voicereel_serve(root, database_url, {"VOICEREEL_RATE_LIMIT_PER_MINUTE": "0"}) as serve:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            stack.callback(services.db.dispose)
            yield Server(serve.base_url, serve.pid, data_dir, services)


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


def _json_script(total_bytes: int) -> Iterator[bytes]:
    """A syntactically valid synthesis request of about `total_bytes`, in 64 KiB pieces: many
    small objects, the costliest shape to parse."""
    line = b'{"speaker_id": "spk_hostile", "text": "Hello there."},'
    piece = line * (64 * 1024 // len(line))
    yield b'{"script": ['
    sent = 0
    while sent < total_bytes:
        yield piece
        sent += len(piece)
    yield line.rstrip(b",") + b"]}"


def test_an_anonymous_body_is_refused_before_it_is_read(server: Server) -> None:
    baseline = _rss_bytes(server.pid)
    peak = baseline
    health: list[float] = []
    done = threading.Event()

    def watch_memory() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes(server.pid))
            time.sleep(0.01)

    def poll_health() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as prober:
            while not done.is_set():
                started = time.perf_counter()
                assert prober.get("/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                time.sleep(0.02)

    threads = [threading.Thread(target=watch_memory), threading.Thread(target=poll_health)]
    for thread in threads:
        thread.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            response = client.post("/v1/synthesize", content=_json_script(40 * MiB),
                                   headers={"content-type": "application/json"})
            # a key that names no tenant is refused just as early
            unknown = client.post("/v1/synthesize", content=_json_script(4 * MiB),
                                  headers={"content-type": "application/json",
                                           "authorization": "Bearer vr_unknown"})
        time.sleep(0.3)  # let the watchers see the aftermath too
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
    growth = peak - baseline
    print(f"40 MiB anonymous JSON: RSS growth {growth / MiB:.1f} MiB; /healthz answered "
          f"{len(health)} times meanwhile, slowest {max(health) * 1000:.0f} ms")
    problem(response, 401, "unauthorized")
    problem(unknown, 401, "unauthorized")
    assert growth < 200 * MiB
    assert health and max(health) < 0.5


def test_json_bodies_have_their_own_limit_and_multipart_only_uploads(server: Server) -> None:
    key, _ = server.key()
    auth = {"authorization": f"Bearer {key}"}
    body = b"".join(_json_script(2 * MiB))
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=60) as client:
        declared = client.post("/v1/synthesize", content=body,
                               headers={"content-type": "application/json"})
        streamed = client.post("/v1/synthesize", content=iter([body[:MiB], body[MiB:]]),
                               headers={"content-type": "application/json"})
        multipart = client.post("/v1/synthesize", data={"script": "[]"},
                                files={"audio": ("a.wav", secrets.token_bytes(1024),
                                                 "audio/wav")})
        speech = client.post("/v1/audio/speech", files={"input": ("x.txt", b"Hi", "text/plain")})
        small = client.post("/v1/synthesize",
                            json={"script": [{"speaker_id": "spk_nobody", "text": "Hi."}]})
    print(f"2 MiB JSON: {declared.status_code} declared, {streamed.status_code} chunked; "
          f"multipart: {multipart.status_code}, {speech.status_code}")
    problem(declared, 413, "payload-too-large")
    problem(streamed, 413, "payload-too-large")
    problem(multipart, 415, "unsupported-media-type")
    problem(speech, 415, "unsupported-media-type")
    problem(small, 422, "validation-failed")  # past the guard: the script itself is judged


# Methods the HTTP parser (httptools) knows but no route takes reach the app as a 405; invented
# ones are refused by the parser (400) before the app, so they never make a label at all.
UNROUTED_METHODS = ["PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH",
                    "REPORT", "PURGE", "LINK", "UNLINK", "MKCALENDAR", "SUBSCRIBE", "UNSUBSCRIBE",
                    "NOTIFY", "ACL", "BIND", "REBIND", "UNBIND", "CHECKOUT", "MERGE", "M-SEARCH",
                    "MKACTIVITY", "SOURCE", "QUERY"]


def test_invented_methods_share_one_metric_label(server: Server) -> None:
    rng = random.Random(11)
    invented = {"".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=10)) for _ in range(300)}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for method in UNROUTED_METHODS:
            assert client.request(method, "/healthz").status_code == 405, method
        for method in invented:
            assert client.request(method, "/healthz").status_code in (400, 405), method
        metrics = client.get("/metrics").text
    labels = set(re.findall(r'^voicereel_http_requests_total\{method="([^"]*)"', metrics,
                            re.MULTILINE))
    print(f"{len(UNROUTED_METHODS)} unrouted and {len(invented)} invented methods: "
          f"{len(labels)} method labels, e.g. {sorted(labels)[:12]}")
    assert "other" in labels
    assert not labels & set(UNROUTED_METHODS) and not labels & invented
    assert len(labels) <= 12


def test_a_non_ascii_digit_in_a_signature_timestamp_is_a_401(server: Server) -> None:
    key, secret = server.key(require_signature=True)
    assert secret
    # Latin-1 superscripts: str.isdigit() accepts them, int() does not.
    answers = []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for stamp in (b"\xb2", b"\xb3\xb9", b"17\xb2", b"\xb9" * 10):
            answers.append(client.get("/v1/speakers", headers={
                "authorization": f"Bearer {key}", "VoiceReel-Timestamp": stamp,
                "VoiceReel-Signature": "v1=" + "0" * 64}))
    print("timestamps of superscript digits:", [a.status_code for a in answers])
    for answer in answers:
        problem(answer, 401, "signature-stale")


def _signed_get(client: httpx.Client, key: str, secret: str, target: str) -> httpx.Response:
    stamp = str(int(time.time()))
    return client.get(target, headers={
        "authorization": f"Bearer {key}", "VoiceReel-Timestamp": stamp,
        "VoiceReel-Signature": signing.sign(secret, stamp, "GET", target, b"")})


def test_the_signing_secret_is_read_once_at_start(server: Server) -> None:
    # Both users of the service secret: the sealed signing secrets of keys, and download URLs.
    key, secret = server.key(require_signature=True)
    assert secret
    storage = server.services.storage
    tenant_id = caller(server.services, key)[1].id
    # a file of a live speaker: downloads of deleted resources are refused whatever the URL
    file_key = f"{speaker_prefix(tenant_id, add_speaker_row(server.services, tenant_id))}/note.txt"
    storage.put(file_key, b"kept", "text/plain")
    signed_by_start_secret = storage.url(file_key, 600, "note.txt")
    secret_file = server.data_dir / SECRET_FILE_NAME
    original = secret_file.read_text()
    secret_file.write_text(secrets.token_hex(32))  # the file changes under the running server
    try:
        new_secret = server.services.settings.resolved_signing_secret()  # reads the file
        signed_by_new_file = LocalStorage(server.data_dir / "files", new_secret).url(
            file_key, 600, "note.txt")
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            request = _signed_get(client, key, secret, "/v1/speakers")
            kept = client.get(signed_by_start_secret)
            changed = client.get(signed_by_new_file)
    finally:
        secret_file.write_text(original)
    print(f"after the secret file changed: signed request {request.status_code}, "
          f"start-secret URL {kept.status_code}, new-file URL {changed.status_code}")
    assert request.status_code == 200, request.text
    assert kept.status_code == 200 and kept.content == b"kept"
    problem(changed, 403, "url-invalid")


@pytest.mark.parametrize("secret", ["s" * 31, "é" * 15 + "x"])  # 31 bytes each
def test_production_refuses_a_short_signing_secret(secret: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEREEL_ENV", "production")
    monkeypatch.setenv("VOICEREEL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEREEL_SIGNING_SECRET", secret)
    with pytest.raises(ValidationError, match="VOICEREEL_SIGNING_SECRET"):
        Settings()
    monkeypatch.setenv("VOICEREEL_SIGNING_SECRET", secrets.token_hex(16))  # 32 bytes
    assert Settings().env == "production"
