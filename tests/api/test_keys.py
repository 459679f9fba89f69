"""Keys through the API (owners only): create, list, revoke, rotate; expired and revoked keys
are refused with their own problem types; the last owner key stays."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.trust_helpers import caller, problem
from voicereel import operations
from voicereel.api.app import create_app
from voicereel.auth.keys import KeyCache
from voicereel.db import repo
from voicereel.db.session import Database
from voicereel.services import Services

POLL_SECONDS = 15.0


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _own_key(client: TestClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


def test_created_key_works_once_shown_and_never_listed(client: TestClient) -> None:
    created = client.post("/v1/keys", json={"role": "editor", "name": "ci",
                                            "rate_limit_per_minute": 50,
                                            "max_concurrent_jobs": 2})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    new = created.json()
    assert new["key"].startswith(new["prefix"]) and new["role"] == "editor"
    assert created.headers["location"] == f"/v1/keys/{new['id']}"
    # the new key acts in the same tenant, with its role
    assert client.get("/v1/speakers", headers=_auth(new["key"])).status_code == 200
    problem(client.get("/v1/keys", headers=_auth(new["key"])), 403, "scope-missing")

    listed = client.get("/v1/keys")
    assert listed.status_code == 200
    assert new["key"] not in listed.text and _own_key(client) not in listed.text
    items = {item["id"]: item for item in listed.json()["items"]}
    assert "key" not in items[new["id"]] and "key_hash" not in items[new["id"]]
    assert items[new["id"]]["name"] == "ci"
    assert items[new["id"]]["rate_limit_per_minute"] == 50
    assert items[new["id"]]["max_concurrent_jobs"] == 2
    assert items[new["id"]]["last_used_at"] is not None  # it was used above
    assert [item["role"] for item in items.values()].count("owner") == 1


def test_signature_key_gets_its_secret_once(client: TestClient) -> None:
    created = client.post("/v1/keys", json={"role": "renderer", "require_signature": True})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["require_signature"] and body["signing_secret"]
    # unsigned, it is refused like any key that requires signatures
    problem(client.get("/v1/speakers", headers=_auth(body["key"])), 401, "signature-missing")
    assert body["signing_secret"] not in client.get("/v1/keys").text


def test_revoked_key_is_refused_on_the_next_request(client: TestClient) -> None:
    new = client.post("/v1/keys", json={"role": "viewer"}).json()
    assert client.get("/v1/speakers", headers=_auth(new["key"])).status_code == 200
    assert client.delete(f"/v1/keys/{new['id']}").status_code == 204
    problem(client.get("/v1/speakers", headers=_auth(new["key"])), 401, "key-revoked")
    # a body is not read for a revoked key either
    problem(client.post("/v1/synthesize", json={"script": []}, headers=_auth(new["key"])),
            401, "key-revoked")
    assert client.delete(f"/v1/keys/{new['id']}").status_code == 204  # again: no change
    listed = {k["id"]: k for k in client.get("/v1/keys").json()["items"]}
    assert listed[new["id"]]["revoked_at"] is not None


def test_the_last_owner_key_cannot_be_removed(client: TestClient, services: Services) -> None:
    _, tenant = caller(services, _own_key(client))
    mine = [k for k in client.get("/v1/keys").json()["items"] if k["role"] == "owner"]
    assert len(mine) == 1
    problem(client.delete(f"/v1/keys/{mine[0]['id']}"), 409, "last-owner-key")
    # an owner key on its way out (rotated, or expiring) does not count as a lasting one
    rotated = client.post("/v1/keys", json={"role": "owner"}).json()
    successor = client.post(f"/v1/keys/{rotated['id']}/rotate",
                            json={"grace_seconds": 60}).json()
    assert successor["replaced_by"] is None and successor["role"] == "owner"
    assert client.delete(f"/v1/keys/{successor['id']}").status_code == 204
    problem(client.delete(f"/v1/keys/{mine[0]['id']}"), 409, "last-owner-key")

    second = client.post("/v1/keys", json={"role": "owner"}).json()
    assert client.delete(f"/v1/keys/{mine[0]['id']}").status_code == 204
    problem(client.get("/v1/keys"), 401, "key-revoked")
    problem(client.delete(f"/v1/keys/{second['id']}", headers=_auth(second["key"])), 409,
            "last-owner-key")
    # other tenants' keys are not found
    with services.db.session() as session:
        other = repo.get_or_create_tenant(session, tenant.name + "-other")
        foreign = repo.add_api_key(session, other.id, role="owner")[0].id
    problem(client.delete(f"/v1/keys/{foreign}", headers=_auth(second["key"])), 404)


def test_rotation_keeps_the_old_secret_for_the_grace_period(client: TestClient) -> None:
    old = client.post("/v1/keys", json={"role": "renderer", "name": "bot",
                                        "max_concurrent_jobs": 3}).json()
    rotated = client.post(f"/v1/keys/{old['id']}/rotate", json={"grace_seconds": 3600})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["key"] != old["key"] and new["id"] != old["id"]
    assert (new["role"], new["name"], new["max_concurrent_jobs"]) == ("renderer", "bot", 3)
    for key in (old["key"], new["key"]):  # both work during the grace period
        assert client.get("/v1/speakers", headers=_auth(key)).status_code == 200
    listed = {k["id"]: k for k in client.get("/v1/keys").json()["items"]}
    assert listed[old["id"]]["replaced_by"] == new["id"]
    expires = datetime.fromisoformat(listed[old["id"]]["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    problem(client.post(f"/v1/keys/{old['id']}/rotate"), 409, "key-not-rotatable")

    # a short grace runs out: the old key is then expired, the new one still works
    short = client.post(f"/v1/keys/{new['id']}/rotate", json={"grace_seconds": 1}).json()
    deadline = time.monotonic() + POLL_SECONDS
    while client.get("/v1/speakers", headers=_auth(new["key"])).status_code == 200:
        assert time.monotonic() < deadline, "the rotated key did not expire"
        time.sleep(0.2)
    body = problem(client.get("/v1/speakers", headers=_auth(new["key"])), 401, "key-expired")
    assert "rotated" in body["detail"]
    assert client.get("/v1/speakers", headers=_auth(short["key"])).status_code == 200

    # no grace at all, and the limits of the grace
    now = client.post(f"/v1/keys/{short['id']}/rotate", json={"grace_seconds": 0}).json()
    problem(client.get("/v1/speakers", headers=_auth(short["key"])), 401, "key-expired")
    problem(client.post(f"/v1/keys/{now['id']}/rotate", json={"grace_seconds": 86401}), 422)
    problem(client.post(f"/v1/keys/{now['id']}/rotate", json={"grace_seconds": -1}), 422)
    problem(client.post("/v1/keys/key_missing/rotate"), 404)


def test_default_grace_is_the_setting(client: TestClient, services: Services) -> None:
    old = client.post("/v1/keys", json={"role": "viewer"}).json()
    client.post(f"/v1/keys/{old['id']}/rotate")
    listed = {k["id"]: k for k in client.get("/v1/keys").json()["items"]}
    left = datetime.fromisoformat(listed[old["id"]]["expires_at"]) - datetime.now(UTC)
    grace = services.settings.key_rotation_grace_seconds
    assert timedelta(seconds=grace - 60) < left <= timedelta(seconds=grace)


def test_expired_key_is_401_key_expired(client: TestClient) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    new = client.post("/v1/keys", json={"role": "viewer", "expires_at": soon.isoformat()})
    assert new.status_code == 201, new.text
    key = new.json()["key"]
    deadline = time.monotonic() + POLL_SECONDS
    while client.get("/v1/speakers", headers=_auth(key)).status_code == 200:
        assert time.monotonic() < deadline, "the key did not expire"
        time.sleep(0.2)
    problem(client.get("/v1/speakers", headers=_auth(key)), 401, "key-expired")
    problem(client.post(f"/v1/keys/{new.json()['id']}/rotate"), 409, "key-not-rotatable")
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    problem(client.post("/v1/keys", json={"role": "viewer", "expires_at": past}), 422)
    problem(client.post("/v1/keys", json={"role": "viewer",
                                          "expires_at": "2030-01-01T00:00:00"}), 422)  # naive
    problem(client.post("/v1/keys", json={"role": "superuser"}), 422)


def test_existing_keys_migrate_to_owner(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate("0007")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, created_at) "
                              "VALUES ('ten_old', 'old', CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at, "
                "require_signature) VALUES ('key_old', 'ten_old', :hash, 'vr_old', "
                "CURRENT_TIMESTAMP, false)"), {"hash": repo.hash_key("vr_old-secret")})
        db.migrate()
        with db.session() as session:
            found = repo.key_and_tenant(session, "vr_old-secret")
            assert found is not None
            key = found[0]
            assert (key.role, key.name, key.expires_at, key.replaced_by) == ("owner", "", None,
                                                                              None)
    finally:
        db.dispose()


def test_last_use_is_written_to_the_key_row(services: Services, tenant_name: str) -> None:
    """Uses are written in batches and when the app stops; the row then holds the time."""
    key = operations.create_key(services, tenant_name)
    before = datetime.now(UTC)
    with TestClient(create_app(services.settings, services)) as app_client:
        assert app_client.get("/v1/speakers", headers=_auth(key)).status_code == 200
        unwritten, _ = caller(services, key)
        assert unwritten.last_used_at is None  # not written on the request's path
    key_row, _ = caller(services, key)
    assert key_row.last_used_at is not None and key_row.last_used_at >= before


def test_a_key_changed_elsewhere_is_read_again_after_the_cache_ttl(
        client: TestClient, services: Services) -> None:
    """A revocation made by another process (here: behind the app's back) is seen once this
    process's copy of the key is `auth_cache_seconds` old; expiry needs no new read."""
    now = [0.0]
    cache = KeyCache(services.settings.auth_cache_seconds, 10, clock=lambda: now[0])
    client.app.state.key_check.cache = cache  # type: ignore[attr-defined]
    new = client.post("/v1/keys", json={"role": "viewer"}).json()
    assert client.get("/v1/speakers", headers=_auth(new["key"])).status_code == 200
    _, tenant = caller(services, new["key"])
    with services.db.session() as session:
        repo.revoke_api_key(session, repo.get_api_key(session, tenant.id, new["id"]),
                            datetime.now(UTC))
    assert client.get("/v1/speakers", headers=_auth(new["key"])).status_code == 200
    now[0] += services.settings.auth_cache_seconds
    problem(client.get("/v1/speakers", headers=_auth(new["key"])), 401, "key-revoked")
