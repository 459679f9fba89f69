"""/v1/synthesize and /v1/jobs: submit a script, follow it, fetch or delete the result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from voicereel import idempotency, operations
from voicereel.api.deps import CurrentCaller, CurrentTenant, RunnerDep, ServicesDep
from voicereel.api.schemas import JobAccepted, JobOut
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs import views

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post("/synthesize", status_code=202, response_model=JobAccepted)
def synthesize(body: SynthesisRequest, services: ServicesDep, runner: RunnerDep,
               caller: CurrentCaller,
               idempotency_key: Annotated[str | None, Header(
                   alias=idempotency.HEADER, max_length=idempotency.MAX_KEY_CHARS)] = None,
               ) -> JSONResponse:
    operations.check_job_request(services, body)

    def submit(session: Session) -> idempotency.StoredResponse:
        job = operations.add_job(session, services, caller.tenant, body, api_key=caller.key)
        return idempotency.StoredResponse(202, {"job_id": job.id, "status": job.status},
                                          {"Location": f"/v1/jobs/{job.id}"})

    fingerprint = idempotency.fingerprint("POST", "/v1/synthesize", body.model_dump(mode="json"))
    answer, replayed = idempotency.respond_in_one_transaction(
        services, caller.tenant.id, idempotency_key, fingerprint, submit)
    if not replayed:  # only a committed row is dispatched; the sweep finds it otherwise
        runner.submit(answer.body["job_id"])
    return answer.render(replayed=replayed)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request, services: ServicesDep,
            tenant: CurrentTenant) -> JobOut:
    return views.job_view(services, tenant.id, job_id, str(request.base_url))


@router.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, services: ServicesDep, tenant: CurrentTenant) -> Response:
    operations.delete_job(services, tenant, job_id)
    return Response(status_code=204)
