"""/v1/synthesize and /v1/jobs: submit a script, follow it, fetch or delete the result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from voicereel import operations
from voicereel.api.deps import CurrentTenant, RunnerDep, ServicesDep
from voicereel.api.schemas import JobAccepted, JobOut
from voicereel.domain.script import SynthesisRequest

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post("/synthesize", status_code=202, response_model=JobAccepted)
def synthesize(body: SynthesisRequest, services: ServicesDep, runner: RunnerDep,
               tenant: CurrentTenant) -> JSONResponse:
    job = operations.submit_job(services, runner, tenant, body)
    return JSONResponse({"job_id": job.id, "status": job.status}, status_code=202,
                        headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request, services: ServicesDep,
            tenant: CurrentTenant) -> Any:
    return operations.job_view(services, tenant, job_id, str(request.base_url))


@router.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, services: ServicesDep, tenant: CurrentTenant) -> Response:
    operations.delete_job(services, tenant, job_id)
    return Response(status_code=204)
