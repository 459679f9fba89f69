"""`voicereel worker`: Celery processes that run `pipeline.run_job` and render its lines.

The `run_job` task is the one job lifecycle of `pipeline.run_job`; its `LineRenderer` is
`CeleryLines`: it publishes `render_unit(job, i)` for every line without a unit, then renders
lines itself, from the last backwards, until every line has one. Whoever first takes a line's
claim (`claims.py`) renders it; lines rendered by an attempt that died are reused by the next.
A coordinator that cannot reach Redis renders every line itself.

Each process builds its `WorkerContext` once: services, a publisher, the line claims and the
lease heartbeat, which renews both the leases of the attempts it coordinates and its claims.
The worker's main process runs the sweep.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from voicereel.db import repo
from voicereel.jobs import pipeline
from voicereel.jobs.leases import LeaseKeeper
from voicereel.jobs.runners.celery.app import (
    BROKER_ERRORS,
    QUEUE,
    RENDER_UNIT,
    RUN_JOB,
    broker_client,
    make_celery_app,
)
from voicereel.jobs.runners.celery.claims import LineClaims
from voicereel.jobs.runners.celery.dispatch import Dispatcher
from voicereel.jobs.sweep import Sweeper
from voicereel.jobs.units import RenderedLine
from voicereel.observability import job_log_context
from voicereel.services import Services, build_services
from voicereel.settings import Settings

log = logging.getLogger(__name__)

# How often a coordinator looks again at lines that other processes are rendering.
WAIT_POLL_SECONDS = 0.25


@dataclass
class WorkerContext:
    """What one worker process needs to run tasks, built once per process."""

    services: Services
    app: Celery
    broker: redis.Redis
    leases: LeaseKeeper
    claims: LineClaims


def build_worker_context(settings: Settings, app: Celery,
                         services: Services | None = None) -> WorkerContext:
    """A context whose heartbeat runs until `ctx.leases.stop()`."""
    services = services or build_services(settings)
    broker = broker_client(settings)
    leases = LeaseKeeper(services)
    claims = LineClaims(broker, leases.token, settings.job_lease_seconds)
    leases.also_renew = claims.renew
    leases.start()
    return WorkerContext(services=services, app=app, broker=broker, leases=leases,
                         claims=claims)


class CeleryLines:
    """Lines rendered as tasks on any worker, and by the coordinator while it waits."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def render(self, run: pipeline.JobRun, missing: list[int]) -> dict[int, RenderedLine]:
        job_id, claims = run.plan.job_id, self.ctx.claims
        self._publish(job_id, missing)
        rendered: dict[int, RenderedLine] = {}
        while missing:
            run.check_deadline()
            index = next((i for i in reversed(missing)
                          if claims.take(job_id, i, if_broker_down=True)), None)
            if index is None:
                run.check_ownership()
                time.sleep(WAIT_POLL_SECONDS)
            else:
                try:
                    if (line := run.render_unit(index)) is not None:
                        rendered[index] = line
                        log.info("job %s: line %d rendered by %s", job_id, index,
                                 self.ctx.leases.token)
                finally:
                    claims.release(job_id, index)
            missing = run.missing()
        return rendered

    def _publish(self, job_id: str, indexes: list[int]) -> None:
        # A single line gains nothing from a second process.
        if len(indexes) < 2:
            return
        try:
            for index in indexes:
                self.ctx.app.send_task(RENDER_UNIT, args=[job_id, index], retry=False)
        except BROKER_ERRORS as exc:
            log.warning("job %s: cannot publish its lines (%s); rendering them here",
                        job_id, exc)


def coordinate(ctx: WorkerContext, job_id: str) -> None:
    """The `run_job` task."""
    owner = ctx.leases.new_owner()
    with ctx.leases.holding(owner):
        pipeline.run_job(ctx.services, job_id, owner, CeleryLines(ctx))


def work_unit(ctx: WorkerContext, job_id: str, index: int) -> None:
    """The `render_unit` task: render one line unless it is done or being rendered."""
    services = ctx.services
    with services.db.session() as session:
        job = repo.load_job(session, job_id)
        if (job is None or job.status != "running" or job.deleted_at is not None
                or repo.unit_done(session, job_id, job.revision, index)):
            return
    if not ctx.claims.take(job_id, index, if_broker_down=False):
        return
    try:
        with job_log_context(job_id, job.request_id):
            if pipeline.render_unit(services, pipeline.load_plan(services, job), index):
                log.info("job %s: line %d rendered by %s", job_id, index, ctx.leases.token)
    except Exception:
        # The coordinator renders the line itself, and reports the error if it happens again.
        log.exception("job %s: line %d failed here; left to the coordinator", job_id, index)
    finally:
        ctx.claims.release(job_id, index)


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context(settings: Settings, app: Celery) -> WorkerContext:
    """This process's context, built on first use (at process start in `voicereel worker`)."""
    global _context
    with _context_lock:
        if _context is None:
            _context = build_worker_context(settings, app)
        return _context


def register_tasks(app: Celery, settings: Settings) -> None:
    @app.task(name=RUN_JOB)
    def run_job_task(job_id: str) -> None:
        coordinate(worker_context(settings, app), job_id)

    @app.task(name=RENDER_UNIT)
    def render_unit_task(job_id: str, index: int) -> None:
        work_unit(worker_context(settings, app), job_id, index)


def run_worker(settings: Settings, concurrency: int) -> None:
    """`voicereel worker`: a Celery worker with `concurrency` processes, plus a sweeper."""
    app = make_celery_app(settings)
    register_tasks(app, settings)
    sweeper: list[Sweeper] = []

    @worker_process_init.connect(weak=False)
    def _start_process(**_: Any) -> None:
        for running in sweeper:  # a process forked from the main one must not use its pool
            running.services.db.engine.dispose(close=False)
        ctx = worker_context(settings, app)
        ctx.services.engine.warm_up()
        log.info("rendering process %s ready", ctx.leases.token)

    @worker_ready.connect(weak=False)
    def _start_sweeper(**_: Any) -> None:
        services = build_services(settings)
        # An app of its own: this thread publishes beside the consumer's event loop.
        dispatcher = Dispatcher(make_celery_app(settings), broker_client(settings), settings)
        sweeper.append(Sweeper(services, dispatcher.sweep_dispatch, BROKER_ERRORS))
        sweeper[0].start()

    @worker_shutdown.connect(weak=False)
    def _stop_sweeper(**_: Any) -> None:
        for running in sweeper:
            running.stop()

    app.worker_main(["worker", f"--concurrency={concurrency}", "--pool=prefork",
                     f"--queues={QUEUE}", "--loglevel=INFO", "--without-gossip",
                     "--without-mingle", f"--hostname=voicereel-{os.getpid()}@%h"])
