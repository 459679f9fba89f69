"""API behaviour through the real app and database: auth, problems, speakers, validation."""

from __future__ import annotations

import io
from typing import Any

import anyio.to_thread
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voicereel.api.app import create_app
from voicereel.services import Services

PROBLEM = "application/problem+json"


def _problem(response, status: int, slug: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and "detail" in body
    if slug:
        assert body["type"].endswith("/" + slug), body
    return body


def test_missing_and_wrong_keys_are_401(client: TestClient) -> None:
    _problem(client.get("/v1/speakers", headers={"Authorization": ""}), 401, "unauthorized")
    _problem(client.get("/v1/speakers", headers={"Authorization": "Bearer nope"}), 401)
    _problem(client.get("/v1/jobs/job_x", headers={"Authorization": "Basic abc"}), 401)


def test_framework_errors_are_problems(client: TestClient) -> None:
    _problem(client.get("/v1/nothing-here"), 404, "not-found")
    _problem(client.put("/v1/speakers"), 405, "method-not-allowed")
    body = _problem(client.post("/v1/synthesize", json={"script": []}), 422,
                    "validation-failed")
    assert body["errors"][0]["loc"][:2] == ["body", "script"]
    _problem(client.post("/v1/synthesize", content=b"{not json",
                         headers={"content-type": "application/json"}), 422)


def test_synthesize_validates_before_accepting(client: TestClient) -> None:
    body = _problem(client.post("/v1/synthesize", json={
        "script": [{"speaker_id": "spk_missing", "text": "Hi."}]}), 422)
    assert body["errors"][0]["loc"] == ["body", "script", 0, "speaker_id"]
    cases = [
        {"script": [{"speaker_id": "spk_a", "text": "   "}]},
        {"script": [{"speaker_id": "spk_a", "text": "Hi"}], "output": {"format": "aiff"}},
        {"script": [{"speaker_id": "spk_a", "text": "Hi"}], "output": {"sample_rate": 7999}},
        {"script": [{"speaker_id": "spk_a", "text": "Hi"}], "output": {"sample_rate": 48001}},
        {"script": [{"speaker_id": "spk_a", "text": "Hi"}], "captions": ["ass"]},
        {"script": [{"speaker_id": "spk_a", "text": "Hi", "pause_after_ms": -1}]},
        {"script": [{"speaker_id": "spk_a", "text": "x" * 2001}]},
        {"script": [{"speaker_id": "spk_a", "text": "Hi"}] * 201},
    ]
    for case in cases:
        _problem(client.post("/v1/synthesize", json=case), 422)


def test_uploads_are_checked_by_content_and_size(client: TestClient) -> None:
    _problem(client.post("/v1/speakers", data={"name": "X"},
                         files={"audio": ("a.wav", b"just some text, not audio", "audio/wav")}),
             415)
    big = b"\0" * (5 * 1024 * 1024)
    _problem(client.post("/v1/speakers", data={"name": "X"},
                         files={"audio": ("a.wav", big, "audio/wav")}), 413)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000 * 35) / 16000).astype(np.float32) * 0.5
    buffer = io.BytesIO()
    sf.write(buffer, tone, 16000, format="FLAC")
    _problem(client.post("/v1/speakers", data={"name": "Tone"},
                         files={"audio": ("t.flac", buffer.getvalue(), "audio/flac")}),
             422, "reference-tone")
    _problem(client.post("/v1/speakers", files={"audio": ("t.flac", b"x", "audio/flac")}), 422)


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_speaker_lifecycle_and_pagination(client: TestClient, other_client: TestClient,
                                          reference_wavs: dict[str, bytes], fmt: str) -> None:
    data, rate = sf.read(io.BytesIO(reference_wavs["Bob"]), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([data, data], axis=1), rate, format=fmt.upper())  # stereo
    created = []
    for i in range(3):
        r = client.post("/v1/speakers", data={"name": f"Bob {i}", "lang": "en-GB",
                                              "transcript": "text"},
                        files={"audio": ("bob.bin", buffer.getvalue(), "application/x")})
        assert r.status_code == 201, r.text
        created.append(r.json())
    assert created[0]["lang"] == "en-GB" and created[0]["reference_seconds"] > 30

    page1 = client.get("/v1/speakers", params={"limit": 2}).json()
    assert [s["id"] for s in page1["items"]] == [created[2]["id"], created[1]["id"]]
    page2 = client.get("/v1/speakers", params={"limit": 2,
                                               "cursor": page1["next_cursor"]}).json()
    assert [s["id"] for s in page2["items"]] == [created[0]["id"]]
    assert page2["next_cursor"] is None
    _problem(client.get("/v1/speakers", params={"cursor": "!!garbage"}), 400)

    # a search by name, a page at a time; LIKE's wildcards are plain characters
    def names(**params: Any) -> tuple[list[str], str | None]:
        page = client.get("/v1/speakers", params=params).json()
        return [s["name"] for s in page["items"]], page["next_cursor"]
    assert names(name="OB 1") == (["Bob 1"], None)
    first, cursor = names(name="bob", limit=2)
    assert first == ["Bob 2", "Bob 1"] and names(name="bob", limit=2, cursor=cursor) == (
        ["Bob 0"], None)
    assert names(name="b_") == names(name="%") == ([], None)
    assert other_client.get("/v1/speakers", params={"name": "bob"}).json()["items"] == []

    target = created[1]["id"]
    _problem(other_client.get(f"/v1/speakers/{target}"), 404)
    _problem(other_client.delete(f"/v1/speakers/{target}"), 404)
    assert client.get(f"/v1/speakers/{target}").json()["name"] == "Bob 1"
    assert client.delete(f"/v1/speakers/{target}").status_code == 204
    _problem(client.get(f"/v1/speakers/{target}"), 404)
    refs = client.app.state.services.settings.data_dir / "files"  # type: ignore[attr-defined]
    assert not list(refs.glob(f"*/speakers/{target}/*"))
    assert len(list(refs.glob("*/speakers/*/reference.wav"))) == 2


def test_readiness_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert {"/v1/speakers", "/v1/synthesize", "/v1/jobs/{job_id}"} <= set(spec["paths"])


def test_blocking_request_work_runs_on_api_threads(services: Services) -> None:
    settings = services.settings.model_copy(update={"api_threads": 3})
    with TestClient(create_app(settings, services)) as client:
        assert client.get("/healthz").status_code == 200
        tokens = client.portal.call(  # type: ignore[union-attr]
            lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens == 3
