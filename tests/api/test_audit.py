"""The audit log: a scripted session of 20 state-changing requests (by three keys, refused
ones included) gives 20 rows, one for one with the answers' request ids; reads are not
logged; filters, pages, tenants and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_job_row, add_speaker_row, caller, problem
from voicereel.audit import ACTIONS
from voicereel.db import repo
from voicereel.db.tables import AuditEvent
from voicereel.jobs.sweep import sweep
from voicereel.services import Services


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/audit", params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_scripted_session_is_logged_one_for_one(client: TestClient, services: Services,
                                                   other_client: TestClient,
                                                   reference_wavs: dict[str, bytes]) -> None:
    owner = client.headers["Authorization"].removeprefix("Bearer ")
    owner_key, tenant = caller(services, owner)
    script = {"script": [{"speaker_id": "", "text": "Hi."}], "captions": []}
    expected: list[tuple[str, str, str | None, int, str]] = []  # request id, action, resource

    def act(action: str, response: Any, status: int, resource: str | None,
            role: str = "owner") -> Any:
        assert response.status_code == status, response.text
        expected.append((response.headers["x-request-id"], action, resource, status, role))
        return response

    spk = act("speaker.create", client.post(
        "/v1/speakers", data={"name": "Voice", "lang": "en"},
        files={"audio": ("ref.wav", reference_wavs["Alice"], "audio/wav")}), 201, None)
    speaker_id = spk.json()["id"]
    expected[-1] = (*expected[-1][:2], speaker_id, *expected[-1][3:])
    script["script"][0]["speaker_id"] = speaker_id
    job_a = client.post("/v1/synthesize", json=script)
    act("job.submit", job_a, 202, job_a.json()["job_id"])
    job_b = client.post("/v1/synthesize", json=script)
    act("job.submit", job_b, 202, job_b.json()["job_id"])
    act("job.delete", client.delete(f"/v1/jobs/{job_b.json()['job_id']}"), 204,
        job_b.json()["job_id"])
    editor = client.post("/v1/keys", json={"role": "editor"})
    act("key.create", editor, 201, editor.json()["id"])
    viewer = client.post("/v1/keys", json={"role": "viewer"})
    act("key.create", viewer, 201, viewer.json()["id"])
    assert client.get("/v1/speakers").status_code == 200  # reads are not logged
    assert client.get("/v1/keys").status_code == 200
    job_c = client.post("/v1/synthesize", json=script, headers=_auth(editor.json()["key"]))
    act("job.submit", job_c, 202, job_c.json()["job_id"], "editor")
    act("job.submit", client.post("/v1/synthesize", json=script,
                                  headers=_auth(viewer.json()["key"])), 403, None, "viewer")
    act("speaker.delete", client.delete(f"/v1/speakers/{speaker_id}",
                                        headers=_auth(viewer.json()["key"])), 403, speaker_id,
        "viewer")
    since = datetime.now(UTC)
    rotated = client.post(f"/v1/keys/{viewer.json()['id']}/rotate")
    act("key.rotate", rotated, 201, viewer.json()["id"])
    act("key.revoke", client.delete(f"/v1/keys/{viewer.json()['id']}"), 204,
        viewer.json()["id"])
    act("job.submit", client.post("/v1/synthesize", json={"script": []}), 422, None)
    failed = add_job_row(services, tenant.id, request=script)
    act("job.revise", client.post(f"/v1/jobs/{failed}/revisions",
                                  json={"edits": [{"line": 0, "retake": True}]}), 202, failed)
    act("job.revise", client.post("/v1/jobs/job_missing/revisions",
                                  json={"edits": [{"line": 0, "retake": True}]}), 404,
        "job_missing")
    row_speaker = add_speaker_row(services, tenant.id)
    act("speaker.delete", client.delete(f"/v1/speakers/{row_speaker}"), 204, row_speaker)
    act("job.delete", client.delete(f"/v1/jobs/{job_a.json()['job_id']}"), 204,
        job_a.json()["job_id"])
    act("key.create", client.post("/v1/keys", json={"role": "root"}), 422, None)
    act("key.revoke", client.delete(f"/v1/keys/{owner_key.id}"), 409, owner_key.id)
    act("speech.render", client.post("/v1/audio/speech", json={
        "model": "tts-1", "input": "Hi.", "voice": speaker_id, "response_format": "wav"}),
        200, None)
    act("job.delete", client.delete(f"/v1/jobs/{job_c.json()['job_id']}"), 204,
        job_c.json()["job_id"])
    lexicon = client.post("/v1/lexicons", json={"name": "L", "lang": "en"})
    act("lexicon.create", lexicon, 201, lexicon.json()["id"])
    act("lexicon.replace", client.put(f"/v1/lexicons/{lexicon.json()['id']}",
                                      json={"name": "M", "lang": "en"}), 200,
        lexicon.json()["id"])
    act("lexicon.delete", client.delete(f"/v1/lexicons/{lexicon.json()['id']}"), 204,
        lexicon.json()["id"])
    # without a valid key there is no tenant to log to
    problem(client.post("/v1/synthesize", json=script, headers=_auth("vr_nope")), 401)
    assert len(expected) == 23

    rows = list(reversed(_audit(client)))  # newest first
    prefixes = {"owner": owner_key.prefix, "editor": editor.json()["prefix"],
                "viewer": viewer.json()["prefix"]}
    assert [(r["request_id"], r["action"], r["resource_id"], r["status"], r["role"])
            for r in rows] == expected
    assert len({r["request_id"] for r in rows}) == 23
    # the session made every kind of change the API offers, each under its own name
    changing = [(m, p) for p, item in client.get("/openapi.json").json()["paths"].items()
                for m in item if m != "get" and p.startswith("/v1/")]
    assert {r["action"] for r in rows} == set(ACTIONS.values())
    assert len(changing) == len(ACTIONS)
    for row in rows:
        assert row["key_prefix"] == prefixes[row["role"]]
        assert row["client_ip"] == "testclient"
        assert row["outcome"] == ("succeeded" if row["status"] < 400 else "refused")
    assert [r["request_id"] for r in _audit(client, action="job.submit")] == [
        e[0] for e in reversed(expected) if e[1] == "job.submit"]
    assert [r["request_id"] for r in _audit(client, since=since.isoformat())] == [
        e[0] for e in reversed(expected[9:])]
    # pages of 6 add up to the whole log
    paged: list[str] = []
    cursor = None
    while True:
        page = client.get("/v1/audit", params={"limit": 6, **({"cursor": cursor} if cursor
                                                               else {})}).json()
        paged += [r["request_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == [e[0] for e in reversed(expected)]
    # owners only, and each tenant its own
    problem(client.get("/v1/audit", headers=_auth(editor.json()["key"])), 403, "scope-missing")
    assert _audit(other_client) == []
    problem(client.get("/v1/audit", params={"cursor": "bm9wZQ"}), 400)


def test_rows_past_the_retention_are_swept(client: TestClient, services: Services) -> None:
    key, tenant = caller(services, client.headers["Authorization"].removeprefix("Bearer "))
    days = services.settings.audit_retention_days
    with services.db.session() as session:
        for age in (days + 1, days - 1):
            repo.add_audit_event(session, AuditEvent(
                tenant_id=tenant.id, at=datetime.now(UTC) - timedelta(days=age), key_id=key.id,
                key_prefix=key.prefix, role="owner", action=f"test.age-{age}", status=200))
    sweep(services, lambda job_id, attempts: False)
    assert [r["action"] for r in _audit(client)] == [f"test.age-{days - 1}"]
