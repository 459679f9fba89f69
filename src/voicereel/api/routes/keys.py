"""/v1/keys: the tenant's API keys, managed by its owners (create, list, revoke, rotate)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from voicereel.api.deps import KeyCacheDep, KeysManage, KeyUsesDep, ScopedRoute, ServicesDep
from voicereel.api.schemas import KeyCreated, KeyList, key_out
from voicereel.auth import keys
from voicereel.auth.keys import KeyRequest, RotateRequest

router = APIRouter(prefix="/v1/keys", tags=["keys"], route_class=ScopedRoute)


def _created(new: keys.NewKey) -> JSONResponse:
    body = KeyCreated.model_validate({**key_out(new.key), "key": new.plaintext,
                                      "signing_secret": new.signing_secret})
    return JSONResponse(body.model_dump(mode="json"), status_code=201,
                        headers={"Location": f"/v1/keys/{new.key.id}",
                                 "Cache-Control": "no-store"})


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyRequest, services: ServicesDep, caller: KeysManage) -> JSONResponse:
    """A new key of this tenant; its secret is in this answer only."""
    return _created(keys.create_key(services, caller.tenant, body))


@router.get("", response_model=KeyList)
def list_keys(services: ServicesDep, uses: KeyUsesDep, caller: KeysManage) -> Any:
    return {"items": [key_out(key) for key in keys.list_keys(services, caller.tenant, uses)]}


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, services: ServicesDep, cache: KeyCacheDep,
               caller: KeysManage) -> Response:
    """Revoke the key; its next request is answered 401 key-revoked, on another server after
    at most `VOICEREEL_AUTH_CACHE_SECONDS`."""
    keys.revoke_key(services, cache, caller.tenant, key_id)
    return Response(status_code=204)


@router.post("/{key_id}/rotate", status_code=201, response_model=KeyCreated)
def rotate_key(key_id: str, services: ServicesDep, cache: KeyCacheDep, caller: KeysManage,
               body: RotateRequest | None = None) -> JSONResponse:
    """A new secret for the key; the old one works for `grace_seconds` more (at most 24 h)."""
    return _created(keys.rotate_key(services, cache, caller.tenant, key_id,
                                    body or RotateRequest()))
