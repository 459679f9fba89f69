"""/v1/synthesize and /v1/jobs: submit a script, follow it, revise it, fetch or delete the
result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from voicereel import idempotency, operations, outbox
from voicereel.api.deps import (
    JobsDelete,
    JobsRead,
    JobsRevise,
    JobsWrite,
    RunnerDep,
    ScopedRoute,
    ServicesDep,
)
from voicereel.api.schemas import (
    JobAccepted,
    JobOut,
    RevisionAccepted,
    RevisionList,
    RevisionOut,
)
from voicereel.domain.revisions import RevisionRequest
from voicereel.domain.script import SynthesisRequest
from voicereel.jobs import events, views

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=ScopedRoute)


@router.post("/synthesize", status_code=202, response_model=JobAccepted)
def synthesize(body: SynthesisRequest, services: ServicesDep, runner: RunnerDep,
               caller: JobsWrite,
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
            caller: JobsRead) -> Response:
    # The most frequent request: the view is a JobOut already, so it is encoded once here
    # rather than validated again against the response model and then encoded.
    view = views.job_view(services, caller.tenant.id, job_id, str(request.base_url))
    return Response(view.model_dump_json(), media_type="application/json")


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse, responses={200: {
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
    "description": "`event: job` lines whose data is the body of GET /v1/jobs/{id}"}})
def follow_job(job_id: str, request: Request, services: ServicesDep,
               caller: JobsRead) -> StreamingResponse:
    """The job as server-sent events: its state now, then again each time its status,
    revision or lines done change, until it has finished (or for
    `VOICEREEL_JOB_EVENTS_MAX_SECONDS`; then open it again)."""
    base_url = str(request.base_url)
    first = views.job_view(services, caller.tenant.id, job_id, base_url)  # 404 before any event
    return StreamingResponse(
        events.job_events(services, caller.tenant.id, base_url, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/jobs/{job_id}/revisions", status_code=202, response_model=RevisionAccepted)
def revise_job(job_id: str, body: RevisionRequest, services: ServicesDep, runner: RunnerDep,
               caller: JobsRevise,
               idempotency_key: Annotated[str | None, Header(
                   alias=idempotency.HEADER, max_length=idempotency.MAX_KEY_CHARS)] = None,
               ) -> JSONResponse:
    """A finished job's next revision: only the lines the edits change render."""
    purges: list[int] = []

    def revise(session: Session) -> idempotency.StoredResponse:
        revised = operations.revise_job(session, services, caller.tenant, job_id, body,
                                        api_key=caller.key)
        purges.extend(revised.purges)
        job = revised.job
        return idempotency.StoredResponse(
            202, {"job_id": job.id, "revision": job.revision, "status": job.status,
                  "lines_to_render": revised.lines_to_render},
            {"Location": f"/v1/jobs/{job.id}/revisions/{job.revision}"})

    fingerprint = idempotency.fingerprint("POST", f"/v1/jobs/{job_id}/revisions",
                                          body.model_dump(mode="json", exclude_unset=True))
    answer, replayed = idempotency.respond_in_one_transaction(
        services, caller.tenant.id, idempotency_key, fingerprint, revise)
    if not replayed:
        for purge_id in purges:
            outbox.purge(services, purge_id)
        runner.submit(answer.body["job_id"])
    return answer.render(replayed=replayed)


@router.get("/jobs/{job_id}/revisions", response_model=RevisionList)
def list_revisions(job_id: str, request: Request, services: ServicesDep,
                   caller: JobsRead) -> RevisionList:
    """Every revision of the job, oldest first, each with its own download URLs."""
    return RevisionList(revisions=views.revision_views(services, caller.tenant.id, job_id,
                                                       str(request.base_url)))


@router.get("/jobs/{job_id}/revisions/{number}", response_model=RevisionOut)
def get_revision(job_id: str, number: int, request: Request, services: ServicesDep,
                 caller: JobsRead) -> RevisionOut:
    return views.revision_views(services, caller.tenant.id, job_id, str(request.base_url),
                                number)[0]


@router.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, services: ServicesDep, caller: JobsDelete) -> Response:
    operations.delete_job(services, caller.tenant, job_id)
    return Response(status_code=204)
