"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from voicereel.api.deps import RunnerDep, ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep, runner: RunnerDep) -> JSONResponse:
    checks = {"database": services.db.ping(), "engine": services.engine.ready(),
              "storage": services.storage.ready(), **runner.checks()}
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
