"""A job followed as server-sent events (`GET /v1/jobs/{id}/events`): one `job` event, the
body `GET /v1/jobs/{id}` answers, each time the job's status, revision or lines done change,
the last once it has finished.

The job row is the truth and nothing publishes its changes, so the stream reads the row a few
times a second: one open request per watcher instead of a client's polls, which would spend
its key's rate limit. A stream ends when the job finishes or after
`job_events_max_seconds`, and a client that still waits opens another.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio

from voicereel.errors import NotFound
from voicereel.jobs.views import JobOut, job_view
from voicereel.services import Services

FINISHED = ("succeeded", "failed", "canceled")
READ_EVERY_SECONDS = 0.1  # a line renders in a second or more: each shows as its own event
KEEP_ALIVE_SECONDS = 15.0  # a comment line, so that proxies keep an idle stream open


def event(job: JobOut) -> str:
    return f"event: job\ndata: {job.model_dump_json()}\n\n"


def _state(job: JobOut) -> tuple[str, int, int, int]:
    return job.status, job.revision, job.units_done, job.units_total


async def job_events(services: Services, tenant_id: str, base_url: str,
                     first: JobOut) -> AsyncIterator[str]:
    """The events of the job `first` shows (read already, so an unknown id answered 404)."""
    deadline = time.monotonic() + services.settings.job_events_max_seconds
    job, sent_at = first, time.monotonic()
    yield event(job)
    while job.status not in FINISHED and time.monotonic() < deadline:
        await anyio.sleep(READ_EVERY_SECONDS)
        try:
            latest = await anyio.to_thread.run_sync(job_view, services, tenant_id, job.id,
                                                    base_url)
        except NotFound:  # deleted meanwhile: nothing more will happen to it
            return
        if _state(latest) != _state(job):
            job, sent_at = latest, time.monotonic()
            yield event(job)
        elif time.monotonic() - sent_at > KEEP_ALIVE_SECONDS:
            sent_at = time.monotonic()
            yield ": still running\n\n"
