"""Access control, table-driven: every operation of /openapi.json, called by a key of every
role, answers 2xx when the role holds the operation's declared scope and 403 scope-missing when
it does not; an operation without a declared scope, or without a request here, fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_job_row, add_speaker_row, caller, problem
from voicereel.api.body_guard import needs_key
from voicereel.auth.roles import ROLE_NAMES, ROLE_SCOPES, Scope, allows
from voicereel.db import repo
from voicereel.db.tables import Lexicon
from voicereel.services import Services


@dataclass
class World:
    """What the requests of the table act on: one tenant's speaker, finished job, keys."""

    services: Services
    tenant_id: str
    speaker_id: str  # a registered voice (real reference), for renders
    job_id: str  # a finished (failed) job of one line
    wav: bytes

    def speaker_row(self) -> str:
        return add_speaker_row(self.services, self.tenant_id)

    def job_row(self) -> str:
        return add_job_row(self.services, self.tenant_id, status="failed")

    def lexicon_row(self) -> str:
        with self.services.db.session() as session:
            return repo.add_lexicon(session, Lexicon(
                id=repo.new_id("lex"), tenant_id=self.tenant_id, name="Row", lang="en",
                rules={"rules": []})).id

    def key(self, role: str = "viewer") -> str:
        with self.services.db.session() as session:
            return repo.add_api_key(session, self.tenant_id, role=role)[0].id


Request = dict[str, Any]
# One request per operation, made afresh for every call, that succeeds for an allowed role.
RECIPES: dict[tuple[str, str], Callable[[World], Request]] = {
    ("post", "/v1/speakers"): lambda w: {
        "data": {"name": "Table", "lang": "en"},
        "files": {"audio": ("ref.wav", w.wav, "audio/wav")}},
    ("get", "/v1/speakers"): lambda w: {},
    ("get", "/v1/speakers/{speaker_id}"): lambda w: {"path": {"speaker_id": w.speaker_id}},
    ("get", "/v1/speakers/{speaker_id}/reference"): lambda w: {
        "path": {"speaker_id": w.speaker_id}},
    ("delete", "/v1/speakers/{speaker_id}"): lambda w: {
        "path": {"speaker_id": w.speaker_row()}},
    ("post", "/v1/synthesize"): lambda w: {"json": {
        "script": [{"speaker_id": w.speaker_id, "text": "Hi."}], "captions": []}},
    ("get", "/v1/jobs/{job_id}"): lambda w: {"path": {"job_id": w.job_id}},
    ("delete", "/v1/jobs/{job_id}"): lambda w: {"path": {"job_id": w.job_row()}},
    ("post", "/v1/jobs/{job_id}/revisions"): lambda w: {
        "path": {"job_id": w.job_id}, "json": {"edits": [{"line": 0, "retake": True}]}},
    ("get", "/v1/jobs/{job_id}/revisions"): lambda w: {"path": {"job_id": w.job_id}},
    ("get", "/v1/jobs/{job_id}/events"): lambda w: {"path": {"job_id": w.job_id}},
    ("get", "/v1/jobs/{job_id}/revisions/{number}"): lambda w: {
        "path": {"job_id": w.job_id, "number": 1}},
    ("post", "/v1/audio/speech"): lambda w: {"json": {
        "model": "tts-1", "input": "Hi.", "voice": w.speaker_id, "response_format": "wav"}},
    ("get", "/v1/models"): lambda w: {},
    ("get", "/v1/languages"): lambda w: {},
    ("post", "/v1/lexicons"): lambda w: {"json": {"name": "Brands", "lang": "en", "rules": [
        {"grapheme": "VoiceReel", "alias": "voice reel"}]}},
    ("get", "/v1/lexicons"): lambda w: {},
    ("get", "/v1/lexicons/{lexicon_id}"): lambda w: {"path": {"lexicon_id": w.lexicon_row()}},
    ("put", "/v1/lexicons/{lexicon_id}"): lambda w: {
        "path": {"lexicon_id": w.lexicon_row()}, "json": {"name": "New", "lang": "en"}},
    ("delete", "/v1/lexicons/{lexicon_id}"): lambda w: {
        "path": {"lexicon_id": w.lexicon_row()}},
    ("get", "/v1/models/{model_id}"): lambda w: {"path": {"model_id": "tts-1"}},
    ("get", "/v1/usage"): lambda w: {},
    ("get", "/v1/webhook-secret"): lambda w: {},
    ("post", "/v1/keys"): lambda w: {"json": {"role": "viewer", "name": "made by the table"}},
    ("get", "/v1/keys"): lambda w: {},
    ("get", "/v1/audit"): lambda w: {"params": {"action": "key.create"}},
    ("delete", "/v1/keys/{key_id}"): lambda w: {"path": {"key_id": w.key()}},
    ("post", "/v1/keys/{key_id}/rotate"): lambda w: {"path": {"key_id": w.key()}},
}


def _call(client: TestClient, method: str, path: str, request: Request, key: str) -> Any:
    url = path.format(**request.pop("path", {}))
    return client.request(method, url, headers={"Authorization": f"Bearer {key}"}, **request)


def _wait_idle(client: TestClient, job_id: str) -> None:
    """Revisions need a finished job: wait for the one the table's last revision queued."""
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the revision did not finish"
        time.sleep(0.2)


def test_every_operation_by_every_role(client: TestClient, services: Services,
                                       reference_wavs: dict[str, bytes]) -> None:
    owner_key = client.headers["Authorization"].removeprefix("Bearer ")
    _, tenant = caller(services, owner_key)
    wav = reference_wavs["Alice"]
    created = client.post("/v1/speakers", data={"name": "Voice", "lang": "en"},
                          files={"audio": ("ref.wav", wav, "audio/wav")})
    assert created.status_code == 201, created.text
    speaker_id = created.json()["id"]
    job_id = add_job_row(services, tenant.id, request={
        "script": [{"speaker_id": speaker_id, "text": "Hi."}], "captions": []})
    world = World(services, tenant.id, speaker_id, job_id, wav)

    role_keys: dict[str, str] = {}
    with services.db.session() as session:
        for role in ROLE_NAMES:
            role_keys[role] = repo.create_api_key(session, tenant.id, role=role)

    schema = client.get("/openapi.json").json()
    operations = [(method, path, op) for path, item in schema["paths"].items()
                  for method, op in item.items() if needs_key(path)]
    assert len(operations) >= len(RECIPES)
    undeclared = [f"{m.upper()} {p}" for m, p, op in operations
                  if op.get("x-required-scope") not in {s.value for s in Scope}]
    assert not undeclared, f"operations without a declared scope: {undeclared}"
    missing = [f"{m.upper()} {p}" for m, p, _ in operations if (m, p) not in RECIPES]
    assert not missing, f"operations the table does not call: {missing}"

    failures: list[str] = []
    for method, path, op in operations:
        scope = Scope(op["x-required-scope"])
        assert f"`{scope.value}`" in op["description"]
        for role in ROLE_NAMES:
            response = _call(client, method, path, RECIPES[(method, path)](world),
                             role_keys[role])
            label = f"{role} {method.upper()} {path}: {response.status_code}"
            if allows(role, scope):
                if not 200 <= response.status_code < 300:
                    failures.append(f"{label} (expected 2xx) {response.text[:300]}")
            else:
                if response.status_code != 403:
                    failures.append(f"{label} (expected 403)")
                    continue
                body = problem(response, 403, "scope-missing")
                assert scope.value in body["detail"] and role in body["detail"]
            if path.endswith("/revisions") and method == "post" and response.status_code < 300:
                _wait_idle(client, job_id)
    assert not failures, "\n".join(failures)


def test_refused_changes_change_nothing(client: TestClient, services: Services) -> None:
    """A 403 is answered before the route runs: the viewer's delete leaves the speaker."""
    owner_key = client.headers["Authorization"].removeprefix("Bearer ")
    _, tenant = caller(services, owner_key)
    speaker_id = add_speaker_row(services, tenant.id)
    job_id = add_job_row(services, tenant.id)
    with services.db.session() as session:
        viewer = repo.create_api_key(session, tenant.id, role="viewer")
    auth = {"Authorization": f"Bearer {viewer}"}
    problem(client.delete(f"/v1/speakers/{speaker_id}", headers=auth), 403, "scope-missing")
    problem(client.delete(f"/v1/jobs/{job_id}", headers=auth), 403, "scope-missing")
    problem(client.post("/v1/keys", json={"role": "owner"}, headers=auth), 403, "scope-missing")
    assert client.get(f"/v1/speakers/{speaker_id}", headers=auth).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200
    assert [k["role"] for k in client.get("/v1/keys").json()["items"]].count("owner") == 1


def test_roles_map_to_known_scopes() -> None:
    assert set(ROLE_SCOPES) == set(ROLE_NAMES)
    assert ROLE_SCOPES["owner"] == frozenset(Scope)
    # only owners manage keys and read the audit log; billing sees usage and nothing else
    for role in ROLE_NAMES:
        assert allows(role, Scope.KEYS_MANAGE) == (role == "owner")
    assert ROLE_SCOPES["billing"] == {Scope.USAGE_READ}
    assert allows("viewer", Scope.JOBS_READ) and not allows("viewer", Scope.JOBS_REVISE)
    assert allows("renderer", Scope.JOBS_REVISE) and allows("editor", Scope.JOBS_REVISE)
    assert not allows("nobody", Scope.JOBS_READ)
