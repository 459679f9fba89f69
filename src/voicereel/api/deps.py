"""Request dependencies: the process's services and runner, and the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from voicereel.db import repo
from voicereel.db.tables import Tenant
from voicereel.errors import Unauthorized
from voicereel.jobs.runners.base import JobRunner
from voicereel.jobs.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


ServicesDep = Annotated[Services, Depends(get_services)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


def current_tenant(request: Request, services: ServicesDep) -> Tenant:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    with services.db.session() as session:
        tenant = repo.tenant_for_key(session, token.strip())
    if tenant is None:
        raise Unauthorized("the API key is not valid")
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
