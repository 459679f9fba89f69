"""A key revoked through one API process is refused there at once, and by another process
once its cached copy of the key is older than `VOICEREEL_AUTH_CACHE_SECONDS`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.api.trust_helpers import problem
from tests.serve import voicereel_serve
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.services import build_services
from voicereel.settings import Settings


def test_revocation_is_seen_by_a_second_process(database_url: str, tmp_path: Path,
                                                tenant_name: str) -> None:
    """The database is the test's own (a SQLite file, or a PostgreSQL schema), shared by this
    process's app and a `voicereel serve` process."""
    services = build_services(Settings(data_dir=tmp_path / "data", database_url=database_url))
    services.db.migrate()
    owner = operations.create_key(services, tenant_name)
    (tmp_path / "second").mkdir()
    with voicereel_serve(tmp_path / "second", database_url,
                         {"VOICEREEL_RATE_LIMIT_PER_MINUTE": "0",
                          "VOICEREEL_AUTH_CACHE_SECONDS": str(CACHE_SECONDS)}) as server, \
            TestClient(create_app(services.settings, services)) as first:
        first.headers["Authorization"] = f"Bearer {owner}"
        created = first.post("/v1/keys", json={"role": "viewer"}).json()
        auth = {"Authorization": f"Bearer {created['key']}"}
        # the second process knows the key, and answers it (so anything it cached is warm)
        for _ in range(3):
            assert httpx.get(f"{server.base_url}/v1/speakers", headers=auth).status_code == 200
        assert first.get("/v1/speakers", headers=auth).status_code == 200  # cached here too
        assert first.delete(f"/v1/keys/{created['id']}").status_code == 204
        problem(first.get("/v1/speakers", headers=auth), 401, "key-revoked")  # at once here
        problem(refused(f"{server.base_url}/v1/speakers", auth), 401, "key-revoked")
        # rotation likewise: the old key expires, the new one works at once
        rotated = first.post(f"/v1/keys/{first_owner_id(first)}/rotate",
                             json={"grace_seconds": 0}).json()
        problem(first.get("/v1/keys"), 401, "key-expired")
        problem(refused(f"{server.base_url}/v1/keys", {"Authorization": f"Bearer {owner}"}),
                401, "key-expired")
        assert httpx.get(f"{server.base_url}/v1/keys", headers={
            "Authorization": f"Bearer {rotated['key']}"}).status_code == 200
    services.db.dispose()


CACHE_SECONDS = 0.5


def refused(url: str, headers: dict[str, str]) -> httpx.Response:
    """The first answer other than 200 to GETs of `url` (the second process answers from its
    cache until its copy of the key is older than CACHE_SECONDS)."""
    deadline = time.monotonic() + CACHE_SECONDS + 30  # a slow machine; never a pass
    while (answer := httpx.get(url, headers=headers)).status_code == 200:
        assert time.monotonic() < deadline, f"{url} still accepts the key"
        time.sleep(CACHE_SECONDS / 5)
    return answer


def first_owner_id(client: TestClient) -> str:
    owners = [k["id"] for k in client.get("/v1/keys").json()["items"] if k["role"] == "owner"]
    assert len(owners) == 1
    return owners[0]
