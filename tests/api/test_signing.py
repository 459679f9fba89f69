"""HMAC request signing: a correct signature passes; wrong secret, stale timestamp, altered
body, altered query and replays answer 401 problems naming the reason."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.api.trust_helpers import problem
from voicereel import operations
from voicereel.auth import signing
from voicereel.services import Services

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
EXAMPLE_SECRET = "vrs_example-secret-do-not-use"
EXAMPLE_TIMESTAMP = "1735689600"
EXAMPLE_BODY = b'{"script":[{"speaker_id":"spk_0123456789abcdef0123","text":"Hello there."}]}'


@pytest.fixture
def signed(services: Services, client: TestClient, tenant_name: str) -> tuple[TestClient, str]:
    key, secret = operations.create_key_with_options(services, tenant_name,
                                                     require_signature=True)
    assert secret is not None
    other = TestClient(client.app)
    other.headers["Authorization"] = f"Bearer {key}"
    return other, secret


def _headers(secret: str, method: str, target: str, body: bytes,
             timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {signing.TIMESTAMP_HEADER: stamp,
            signing.SIGNATURE_HEADER: signing.sign(secret, stamp, method, target, body)}


def test_worked_example_in_the_docs_is_what_the_code_computes() -> None:
    post = signing.sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, "POST", "/v1/synthesize", EXAMPLE_BODY)
    get = signing.sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, "GET", "/v1/speakers?limit=2", b"")
    docs = DOCS.read_text()
    for value in (post, get, hashlib.sha256(EXAMPLE_BODY).hexdigest(), EXAMPLE_SECRET,
                  EXAMPLE_BODY.decode()):
        assert value in docs, value


def test_correct_signatures_pass(signed: tuple[TestClient, str]) -> None:
    client, secret = signed
    target = "/v1/speakers?limit=2"
    response = client.get(target, headers=_headers(secret, "GET", target, b""))
    assert response.status_code == 200, response.text
    assert int(response.headers["RateLimit-Remaining"]) >= 0
    body = b'{"script": [{"speaker_id": "spk_nobody", "text": "Hi."}]}'
    response = client.post("/v1/synthesize", content=body,
                           headers={"content-type": "application/json",
                                    **_headers(secret, "POST", "/v1/synthesize", body)})
    # past authentication: the script is judged (the speaker is unknown)
    problem(response, 422, "validation-failed")


def test_signed_multipart_upload_is_verified_over_its_raw_bytes(
        signed: tuple[TestClient, str]) -> None:
    client, secret = signed
    request = httpx.Request("POST", "http://testserver/v1/speakers", data={"name": "X"},
                            files={"audio": ("a.wav", b"not audio", "audio/wav")})
    body = request.read()
    headers = {"content-type": request.headers["content-type"],
               **_headers(secret, "POST", "/v1/speakers", body)}
    problem(client.post("/v1/speakers", content=body, headers=headers), 415)
    altered = body.replace(b"not audio", b"NOT audio")
    headers = {"content-type": request.headers["content-type"],
               **_headers(secret, "POST", "/v1/speakers", body)}
    problem(client.post("/v1/speakers", content=altered, headers=headers), 401,
            "signature-mismatch")


def test_bad_signatures_are_401_with_a_reason(signed: tuple[TestClient, str]) -> None:
    client, secret = signed
    target = "/v1/speakers"
    problem(client.get(target), 401, "signature-missing")
    problem(client.get(target, headers=_headers("vrs_wrong", "GET", target, b"")), 401,
            "signature-mismatch")
    stale = int(time.time()) - 301
    problem(client.get(target, headers=_headers(secret, "GET", target, b"", stale)), 401,
            "signature-stale")
    future = int(time.time()) + 301
    problem(client.get(target, headers=_headers(secret, "GET", target, b"", future)), 401,
            "signature-stale")
    problem(client.get(target, headers={**_headers(secret, "GET", target, b""),
                                        signing.TIMESTAMP_HEADER: "yesterday"}), 401,
            "signature-stale")
    # the query is signed too
    problem(client.get("/v1/speakers?limit=3",
                       headers=_headers(secret, "GET", "/v1/speakers?limit=2", b"")), 401,
            "signature-mismatch")
    body = b'{"script": [{"speaker_id": "spk_a", "text": "Hi."}]}'
    sent = body.replace(b"Hi.", b"Bye")
    problem(client.post("/v1/synthesize", content=sent,
                        headers={"content-type": "application/json",
                                 **_headers(secret, "POST", "/v1/synthesize", body)}), 401,
            "signature-mismatch")
    # another method with the same path and body
    problem(client.delete("/v1/jobs/job_x", headers=_headers(secret, "GET", "/v1/jobs/job_x",
                                                             b"")), 401, "signature-mismatch")


def test_a_replayed_signature_is_refused(signed: tuple[TestClient, str]) -> None:
    client, secret = signed
    headers = _headers(secret, "GET", "/v1/speakers", b"")
    assert client.get("/v1/speakers", headers=headers).status_code == 200
    body = problem(client.get("/v1/speakers", headers=headers), 401, "signature-replayed")
    assert "already used" in body["detail"]


def test_keys_without_the_requirement_need_no_signature(client: TestClient) -> None:
    assert client.get("/v1/speakers").status_code == 200


def test_cli_creates_a_key_that_must_sign(services: Services, client: TestClient,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from voicereel import cli
    from voicereel.settings import get_settings

    settings = services.settings
    monkeypatch.setenv("VOICEREEL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("VOICEREEL_DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.main, ["keys", "create", "--tenant", "signing-cli",
                                               "--require-signature", "--rate-limit", "50"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    key, secret = lines[-1], lines[lines.index(next(
        line for line in lines if line.startswith("Signing secret"))) + 1]
    assert key.startswith("vr_") and secret.startswith("vrs_")
    signer = TestClient(client.app)
    signer.headers["Authorization"] = f"Bearer {key}"
    problem(signer.get("/v1/speakers"), 401, "signature-missing")
    response = signer.get("/v1/speakers", headers=_headers(secret, "GET", "/v1/speakers", b""))
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == "50"
