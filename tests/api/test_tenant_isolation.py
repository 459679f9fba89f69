"""Every route that takes an id answers 404 for another tenant's id, and changes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_job_row, add_speaker_row, caller, problem
from voicereel.services import Services

# /v1/files/{key} takes no API key: it is reached only through signed, expiring URLs;
# /v1/models/{model_id} names the service's engines, which every tenant shares.
NOT_TENANT_ROUTES = {"/v1/files/{key}", "/v1/models/{model_id}"}
# A valid body where a route needs one, so that the id is what decides the answer.
BODIES = {("POST", "/v1/jobs/{job_id}/revisions"): {"edits": [{"line": 0, "retake": True}]},
          ("PUT", "/v1/lexicons/{lexicon_id}"): {"name": "Theirs", "lang": "en"}}


def test_other_tenants_ids_are_404_on_every_id_route(client: TestClient,
                                                     other_client: TestClient,
                                                     services: Services) -> None:
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    ids = {"speaker_id": add_speaker_row(services, tenant.id),
           "job_id": add_job_row(services, tenant.id, status="failed"), "number": "1",
           "key_id": client.post("/v1/keys", json={"role": "viewer"}).json()["id"],
           "lexicon_id": client.post("/v1/lexicons", json={"name": "L", "lang": "en"}).json()["id"]}
    paths = client.get("/openapi.json").json()["paths"]
    routes = [(method.upper(), path) for path, operations in paths.items()
              if "{" in path and path not in NOT_TENANT_ROUTES for method in operations]
    assert routes, "no id routes found"
    checked = []
    for method, path in routes:
        params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        unknown = set(params) - set(ids)
        assert not unknown, f"{method} {path}: add an owned id for {unknown} to this test"
        url = path.format(**ids)
        problem(other_client.request(method, url, json=BODIES.get((method, path))), 404,
                "not-found")
        checked.append(f"{method} {path}")
    # the owner still sees everything
    assert client.get(f"/v1/speakers/{ids['speaker_id']}").status_code == 200
    assert client.get(f"/v1/jobs/{ids['job_id']}").status_code == 200
    assert client.get(f"/v1/jobs/{ids['job_id']}/revisions").json()["revisions"][0]["number"] == 1
    assert client.get(f"/v1/lexicons/{ids['lexicon_id']}").json()["name"] == "L"
    assert ids["key_id"] in {k["id"] for k in client.get("/v1/keys").json()["items"]
                             if k["revoked_at"] is None and k["replaced_by"] is None}
    assert {"GET /v1/speakers/{speaker_id}", "DELETE /v1/speakers/{speaker_id}",
            "GET /v1/jobs/{job_id}", "DELETE /v1/jobs/{job_id}"} <= set(checked)
