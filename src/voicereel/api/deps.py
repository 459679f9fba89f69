"""Request dependencies: the process's services and runner, and the caller's tenant."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from voicereel.api.body_guard import BODY_SHA256, IDENTIFIED, RESPONSE_HEADERS
from voicereel.auth import signing
from voicereel.auth.ratelimit import RateLimiter
from voicereel.db import repo
from voicereel.db.tables import ApiKey, Tenant
from voicereel.errors import SignatureMismatch, Unauthorized
from voicereel.jobs.runners.base import JobRunner
from voicereel.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


ServicesDep = Annotated[Services, Depends(get_services)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


@dataclass
class Caller:
    """The authenticated API key and its tenant."""

    key: ApiKey
    tenant: Tenant


def identify(services: Services, authorization: str) -> tuple[ApiKey, Tenant]:
    """The key an `Authorization: Bearer <key>` header value names, and its tenant.

    The one key lookup: the body guard calls it before a body is read; raises Unauthorized.
    """
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    with services.db.session() as session:
        found = repo.key_and_tenant(session, token.strip())
    if found is None:
        raise Unauthorized("the API key is not valid")
    return found


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
        found = await run_in_threadpool(identify, services,
                                        request.headers.get("authorization", ""))
    key, tenant = found
    if key.require_signature:
        body_sha256 = request.scope.get(BODY_SHA256)
        if body_sha256 is None:  # no route parameter read the body yet
            body_sha256 = hashlib.sha256(await request.body()).hexdigest()
        await run_in_threadpool(_verify_signature, services, key, request, body_sha256)
    limiter: RateLimiter = request.app.state.rate_limiter
    headers = await run_in_threadpool(limiter.check, key)
    request.scope[RESPONSE_HEADERS] = headers
    return Caller(key=key, tenant=tenant)


def current_tenant(caller: Annotated[Caller, Depends(authenticate)]) -> Tenant:
    return caller.tenant


CurrentCaller = Annotated[Caller, Depends(authenticate)]
CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
