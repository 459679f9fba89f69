"""Request dependencies: the process's services and runner, the caller, and the scope each
route needs (`RequireScope`: the one access check, against `auth/roles.py`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from voicereel.api.body_guard import BODY_SHA256, IDENTIFIED, RESPONSE_HEADERS, needs_key
from voicereel.auth import keys, signing
from voicereel.auth.ratelimit import RateLimiter
from voicereel.auth.roles import Scope, allows, roles_with
from voicereel.db import repo
from voicereel.db.tables import ApiKey, Tenant
from voicereel.errors import ScopeMissing, SignatureMismatch, Unauthorized
from voicereel.jobs.runners.base import JobRunner
from voicereel.services import Services


# `async`: FastAPI runs a plain `def` dependency in the thread pool, a hop per request each.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


async def get_key_uses(request: Request) -> keys.KeyUses:
    uses: keys.KeyUses = request.app.state.key_uses
    return uses


async def get_key_cache(request: Request) -> keys.KeyCache:
    check: KeyCheck = request.app.state.key_check
    return check.cache


ServicesDep = Annotated[Services, Depends(get_services)]
KeyUsesDep = Annotated[keys.KeyUses, Depends(get_key_uses)]
KeyCacheDep = Annotated[keys.KeyCache, Depends(get_key_cache)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


@dataclass
class Caller:
    """The authenticated API key and its tenant."""

    key: ApiKey
    tenant: Tenant


class KeyCheck:
    """The one key lookup: the key an `Authorization: Bearer <key>` header value names, and its
    tenant. The body guard calls it before a body is read; it raises Unauthorized (KeyRevoked,
    KeyExpired for a key that was valid).

    A key seen within `auth_cache_seconds` is answered from `cache` on the event loop; only
    the others read the database, in the thread pool.
    """

    def __init__(self, services: Services, uses: keys.KeyUses, cache: keys.KeyCache) -> None:
        self.services = services
        self.uses = uses
        self.cache = cache

    async def __call__(self, authorization: str) -> tuple[ApiKey, Tenant]:
        key_hash = _key_hash(authorization)
        found = self.cache.get(key_hash)
        if found is None:
            found = await run_in_threadpool(self._read, key_hash)
        keys.check_usable(found[0])
        self.uses.record(found[0])
        return found

    def _read(self, key_hash: str) -> tuple[ApiKey, Tenant]:
        with self.services.db.session() as session:
            found = repo.key_and_tenant_by_hash(session, key_hash)
        if found is None:
            raise Unauthorized("the API key is not valid")
        self.cache.put(key_hash, *found)
        return found


def _key_hash(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    return repo.hash_key(token.strip())


def _verify_signature(services: Services, key: ApiKey, request: Request, body_sha256: str) -> None:
    if not key.signing_secret:
        raise SignatureMismatch("this key requires signatures but has no signing secret; "
                                "create a new key")
    try:
        secret = signing.decrypt_secret(services.signing_secret, key.signing_secret)
    except ValueError as exc:
        raise SignatureMismatch("this key's signing secret is no longer readable by the "
                                "service (its secret was rotated); create a new key") from exc
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query: bytes = request.scope.get("query_string", b"")
    target = (raw_path + (b"?" + query if query else b"")).decode("latin-1")
    signing.verify(services.db, secret, request.headers, request.method, target, body_sha256,
                   services.settings.signature_tolerance_seconds)


async def authenticate(request: Request, services: ServicesDep) -> Caller:
    """Bearer key, then its request signature when the key requires one, then its rate limit."""
    found: tuple[ApiKey, Tenant] | None = request.scope.get(IDENTIFIED)
    if found is None:  # a route the body guard lets through without a key
        check: KeyCheck = request.app.state.key_check
        found = await check(request.headers.get("authorization", ""))
    key, tenant = found
    if key.require_signature:
        body_sha256 = request.scope.get(BODY_SHA256)
        if body_sha256 is None:  # no route parameter read the body yet
            body_sha256 = hashlib.sha256(await request.body()).hexdigest()
        await run_in_threadpool(_verify_signature, services, key, request, body_sha256)
    limiter: RateLimiter = request.app.state.rate_limiter
    headers = (await run_in_threadpool(limiter.check, key) if limiter.blocks(key)
               else limiter.check(key))
    request.scope[RESPONSE_HEADERS] = headers
    return Caller(key=key, tenant=tenant)


async def current_tenant(caller: Annotated[Caller, Depends(authenticate)]) -> Tenant:
    return caller.tenant


CurrentCaller = Annotated[Caller, Depends(authenticate)]
CurrentTenant = Annotated[Tenant, Depends(current_tenant)]


class RequireScope:
    """The dependency that lets a caller through when its key's role holds `scope`.

    The app's OpenAPI document states each operation's scope from these (`x-required-scope`).
    """

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, caller: CurrentCaller) -> Caller:
        if not allows(caller.key.role, self.scope):
            raise ScopeMissing(scope=self.scope.value, role=caller.key.role)
        return caller


# What a route's caller parameter says: the authenticated caller, holding that one scope.
SpeakersRead = Annotated[Caller, Depends(RequireScope(Scope.SPEAKERS_READ))]
SpeakersWrite = Annotated[Caller, Depends(RequireScope(Scope.SPEAKERS_WRITE))]
JobsRead = Annotated[Caller, Depends(RequireScope(Scope.JOBS_READ))]
JobsWrite = Annotated[Caller, Depends(RequireScope(Scope.JOBS_WRITE))]
JobsRevise = Annotated[Caller, Depends(RequireScope(Scope.JOBS_REVISE))]
JobsDelete = Annotated[Caller, Depends(RequireScope(Scope.JOBS_DELETE))]
ModelsRead = Annotated[Caller, Depends(RequireScope(Scope.MODELS_READ))]
LexiconsRead = Annotated[Caller, Depends(RequireScope(Scope.LEXICONS_READ))]
LexiconsWrite = Annotated[Caller, Depends(RequireScope(Scope.LEXICONS_WRITE))]
UsageRead = Annotated[Caller, Depends(RequireScope(Scope.USAGE_READ))]
WebhooksRead = Annotated[Caller, Depends(RequireScope(Scope.WEBHOOKS_READ))]
KeysManage = Annotated[Caller, Depends(RequireScope(Scope.KEYS_MANAGE))]
AuditRead = Annotated[Caller, Depends(RequireScope(Scope.AUDIT_READ))]


def required_scope(dependant: Dependant) -> Scope | None:
    """The scope a route's dependencies require (searched through nested dependencies)."""
    call = dependant.call
    if isinstance(call, RequireScope):
        return call.scope
    for sub in dependant.dependencies:
        found = required_scope(sub)
        if found is not None:
            return found
    return None


class ScopedRoute(APIRoute):
    """The route class of every `/v1` router: a route that needs a key and declares no scope
    is refused when it is defined, and each operation states its scope in the OpenAPI
    document (`x-required-scope`, and a sentence of its description)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if not needs_key(self.path):
            return
        scope = required_scope(self.dependant)
        if scope is None:
            raise RuntimeError(f"route {self.path} needs a key but declares no scope")
        self.openapi_extra = {**(self.openapi_extra or {}), "x-required-scope": scope.value}
        note = f"Requires the scope `{scope.value}` (roles: {', '.join(roles_with(scope))})."
        self.description = f"{self.description}\n\n{note}" if self.description else note
