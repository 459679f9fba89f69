"""Jobs on Celery: the app, its two tasks, and how several workers share one job safely.

The job row is the truth; a message only says "look at job X" or "render line i of job X".

Dispatch. `Dispatcher.dispatch` publishes `voicereel.run_job` and sets a Redis marker
`voicereel:dispatched:<job>:<attempts>` that lives `redispatch_seconds`. The API dispatches a
job after its row is committed. The sweep (every `sweep_interval_seconds` in every API process
and in every worker's main process) dispatches each queued job, and each running job whose
lease expired, that has no live marker: a job committed but never published (crash, Redis down)
or whose message died with a worker or with Redis is sent again. A second message for a job is
harmless, because only one attempt can claim it.

Coordinator. `run_job` claims the job (`repo.claim_job`: one more attempt, lease owner = a token
unique to this attempt, at most `max_attempts`). Only the coordinator changes the job's state,
and a heartbeat thread in its process renews the lease every lease/3 s. When the process dies
the lease runs out, the sweep dispatches the job again and a new attempt starts.

Units. The coordinator publishes `voicereel.render_unit(job, i)` for every line that has no
`job_units` row, then renders lines itself, from the last backwards, until every line has one.
A line is rendered by whoever first takes its claim, the Redis key `voicereel:unit:<job>:<i>`
set with NX and the lease as expiry and renewed by the heartbeat of the process rendering it.
A dead process's claim expires and the coordinator takes the line; a unit message that finds
its line done or claimed does nothing, so the coordinator waits only for lines that live
processes render. A rendered line is stored at `<job prefix>/units/<i>/line.npz` and its row is
recorded only while the job runs (else the file is removed again); progress is the number of
rows and only goes up. Lines rendered by an attempt that died are reused by the next.

Assembly. With every line stored the coordinator checks it still holds the lease, joins the
lines with `pipeline.assemble` (which marks the job succeeded only if this attempt owns it),
then removes the unit files and rows. The sweep removes units left behind by a process that
died in between, and those of failed or canceled jobs: a finished job keeps one set of files.

Callbacks. After an attempt ends the job, its process delivers the job's webhook, as the
inline runner does.

Broker trouble. Late acks, reject-on-worker-lost, prefetch 1 and a visibility timeout longer
than `max_job_seconds` make Redis hand a dead worker's message to another, as a backstop to the
sweep. While Redis is down `submit` accepts the job anyway (the row is committed, the sweep
sends it when Redis is back), and a coordinator that cannot reach Redis renders every line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from kombu.exceptions import OperationalError

from voicereel.db import repo
from voicereel.errors import SynthesisFailed
from voicereel.jobs import pipeline
from voicereel.jobs.services import Services, build_services
from voicereel.observability import job_context
from voicereel.settings import Settings
from voicereel.storage import job_prefix
from voicereel.webhooks import deliver_job_webhook

log = logging.getLogger(__name__)

QUEUE = "voicereel"
RUN_JOB = "voicereel.run_job"
RENDER_UNIT = "voicereel.render_unit"
# Everything a broken or restarted broker can raise at a publisher or a Redis client.
BROKER_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OperationalError, OSError)
# How often a coordinator looks again at lines that other processes are rendering.
WAIT_POLL_SECONDS = 0.25


def make_celery_app(settings: Settings) -> Celery:
    """The Celery app of API and workers alike; the tasks find their services per process."""
    app = Celery("voicereel", broker=settings.broker_url, set_as_current=False)
    timeout = settings.broker_timeout_seconds
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # At least once: a message is acknowledged after its task ran, and given back when the
        # process running it dies; each process holds only the message it works on.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.max_job_seconds + 60,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds,
                                  "socket_connect_timeout": timeout},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for Redis however long it is away
        # A running job keeps going through a broker outage; its row says whether it finished.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )

    @app.task(name=RUN_JOB)
    def run_job_task(job_id: str) -> None:
        coordinate(worker_context(settings, app), job_id)

    @app.task(name=RENDER_UNIT)
    def render_unit_task(job_id: str, index: int) -> None:
        work_unit(worker_context(settings, app), job_id, index)

    return app


def broker_client(settings: Settings) -> redis.Redis:
    """A Redis client on the broker for markers and claims, failing fast when it is away."""
    return redis.Redis.from_url(settings.broker_url,
                                socket_timeout=settings.broker_timeout_seconds,
                                socket_connect_timeout=settings.broker_timeout_seconds)


def _process_token() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Publishes "run job X" and remembers for a while that it did."""

    def __init__(self, app: Celery, broker: redis.Redis, settings: Settings) -> None:
        self.app = app
        self.broker = broker
        self.marker_ms = int(settings.redispatch_seconds * 1000)

    def dispatch(self, job_id: str, attempts: int, *, unless_recent: bool) -> bool:
        """Publish the job; with `unless_recent`, only if not done for this attempt lately.

        Raises one of BROKER_ERRORS when Redis cannot be reached.
        """
        marker = f"voicereel:dispatched:{job_id}:{attempts}"
        if not self.broker.set(marker, "1", nx=unless_recent, px=self.marker_ms):
            return False
        try:
            self.app.send_task(RUN_JOB, args=[job_id], retry=False)
        except BaseException:
            # Let the next sweep try again rather than wait for the marker to expire.
            with contextlib.suppress(*BROKER_ERRORS):
                self.broker.delete(marker)
            raise
        return True


def sweep(services: Services, dispatcher: Dispatcher) -> int:
    """Dispatch what nobody runs and remove finished jobs' units; returns jobs dispatched."""
    with services.db.session() as session:
        repo.fail_exhausted_jobs(session, services.settings.max_attempts)
        candidates = repo.dispatchable_jobs(session)
        leftovers = repo.finished_jobs_with_units(session)
    sent = sum(dispatcher.dispatch(job_id, attempts, unless_recent=True)
               for job_id, attempts in candidates)
    for job_id, tenant_id in leftovers:
        pipeline.discard_units(services, job_id, job_prefix(tenant_id, job_id))
    return sent


class Sweeper:
    """A thread that calls `sweep` every `sweep_interval_seconds` until stopped."""

    def __init__(self, services: Services, dispatcher: Dispatcher) -> None:
        self.services = services
        self.dispatcher = dispatcher
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="voicereel-sweeper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self.services.settings.sweep_interval_seconds
        while not self._stop.is_set():
            try:
                sent = sweep(self.services, self.dispatcher)
                if sent:
                    log.info("sweep dispatched %d job(s)", sent)
            except BROKER_ERRORS as exc:
                log.warning("sweep: broker unreachable (%s); trying again in %.0f s",
                            exc, interval)
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", interval)
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


@dataclass
class Heartbeat:
    """Renews, every lease/3 s, the leases and line claims that this process holds."""

    services: Services
    broker: redis.Redis
    owners: set[str] = field(default_factory=set)
    claims: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._loop, name="voicereel-heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def hold(self, owner: str) -> None:
        with self._lock:
            self.owners.add(owner)

    def drop(self, owner: str) -> None:
        with self._lock:
            self.owners.discard(owner)

    def hold_claim(self, key: str) -> None:
        with self._lock:
            self.claims.add(key)

    def drop_claim(self, key: str) -> None:
        with self._lock:
            self.claims.discard(key)

    def beat(self) -> None:
        lease = self.services.settings.job_lease_seconds
        with self._lock:
            owners, claims = list(self.owners), list(self.claims)
        if owners:
            with self.services.db.session() as session:
                for owner in owners:
                    repo.extend_leases(session, owner, lease)
        try:
            for key in claims:
                self.broker.expire(key, lease)
        except BROKER_ERRORS:
            pass  # claims die with a broker restart anyway; the lines are then rendered again

    def _loop(self) -> None:
        interval = self.services.settings.job_lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat failed; trying again in %.1f s", interval)


class LineClaims:
    """Who renders which line of a job right now: Redis keys with the lease as expiry."""

    def __init__(self, broker: redis.Redis, heartbeat: Heartbeat, token: str,
                 lease_seconds: int) -> None:
        self.broker = broker
        self.heartbeat = heartbeat
        self.token = token
        self.lease_seconds = lease_seconds

    @staticmethod
    def key(job_id: str, index: int) -> str:
        return f"voicereel:unit:{job_id}:{index}"

    def take(self, job_id: str, index: int, *, if_broker_down: bool) -> bool:
        """Claim the line; when Redis cannot say, `if_broker_down` decides."""
        key = self.key(job_id, index)
        try:
            taken = bool(self.broker.set(key, self.token, nx=True, ex=self.lease_seconds))
        except BROKER_ERRORS:
            taken = if_broker_down
        if taken:
            self.heartbeat.hold_claim(key)
        return taken

    def release(self, job_id: str, index: int) -> None:
        key = self.key(job_id, index)
        self.heartbeat.drop_claim(key)
        try:
            if self.broker.get(key) == self.token.encode():
                self.broker.delete(key)
        except BROKER_ERRORS:
            pass  # the claim expires by itself


@dataclass
class WorkerContext:
    """What one worker process needs to run tasks, built once per process."""

    services: Services
    app: Celery
    broker: redis.Redis
    heartbeat: Heartbeat
    claims: LineClaims
    token: str

    def new_owner(self) -> str:
        """A lease owner unique to one attempt, naming the process that runs it."""
        return f"{self.token}:{uuid.uuid4().hex[:8]}"


def build_worker_context(settings: Settings, app: Celery,
                         services: Services | None = None) -> WorkerContext:
    """A context whose heartbeat runs until `ctx.heartbeat.stop()`."""
    services = services or build_services(settings)
    broker = broker_client(settings)
    heartbeat = Heartbeat(services, broker)
    token = _process_token()
    heartbeat.start()
    return WorkerContext(services=services, app=app, broker=broker, heartbeat=heartbeat,
                         token=token,
                         claims=LineClaims(broker, heartbeat, token, settings.job_lease_seconds))


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context(settings: Settings, app: Celery) -> WorkerContext:
    """This process's context, built on first use (at process start in `voicereel worker`)."""
    global _context
    with _context_lock:
        if _context is None:
            _context = build_worker_context(settings, app)
        return _context


def coordinate(ctx: WorkerContext, job_id: str) -> None:
    """The `run_job` task: claim the job, see every line rendered, assemble, call back."""
    services = ctx.services
    owner = ctx.new_owner()
    if not pipeline.claim(services, job_id, owner):
        return  # finished, deleted, or running under a live attempt: a duplicate message
    with job_context(services, job_id):
        log.info("job %s: attempt %s started", job_id, owner)
        ctx.heartbeat.hold(owner)
        try:
            _render_and_assemble(ctx, job_id, owner)
        finally:
            ctx.heartbeat.drop(owner)
        deliver_job_webhook(services, job_id)


def _render_and_assemble(ctx: WorkerContext, job_id: str, owner: str) -> None:
    services = ctx.services
    with pipeline.job_outcome(services, job_id, owner):
        plan = pipeline.load_plan(services, job_id)
        missing = pipeline.missing_units(services, plan)
        _publish_units(ctx, job_id, missing)
        deadline = time.monotonic() + services.settings.max_job_seconds
        while missing:
            if time.monotonic() > deadline:
                raise SynthesisFailed(f"the job took longer than the allowed "
                                      f"{services.settings.max_job_seconds} s")
            index = next((i for i in reversed(missing)
                          if ctx.claims.take(job_id, i, if_broker_down=True)), None)
            if index is None:
                _check_ownership(services, job_id, owner)
                time.sleep(WAIT_POLL_SECONDS)
            else:
                try:
                    if not pipeline.render_unit(services, plan, index):
                        raise pipeline.JobLost(job_id)
                    log.info("job %s: line %d rendered by %s", job_id, index, ctx.token)
                finally:
                    ctx.claims.release(job_id, index)
            missing = pipeline.missing_units(services, plan)
        _check_ownership(services, job_id, owner)
        pipeline.assemble_units(services, plan, owner)
        log.info("job %s: assembled by %s", job_id, owner)


def _publish_units(ctx: WorkerContext, job_id: str, indexes: list[int]) -> None:
    # A single line gains nothing from a second process.
    if len(indexes) < 2:
        return
    try:
        for index in indexes:
            ctx.app.send_task(RENDER_UNIT, args=[job_id, index], retry=False)
    except BROKER_ERRORS as exc:
        log.warning("job %s: cannot publish its lines (%s); rendering them here", job_id, exc)


def _check_ownership(services: Services, job_id: str, owner: str) -> None:
    with services.db.session() as session:
        if not repo.holds_lease(session, job_id, owner):
            raise pipeline.JobLost(job_id)


def work_unit(ctx: WorkerContext, job_id: str, index: int) -> None:
    """The `render_unit` task: render one line unless it is done or being rendered."""
    services = ctx.services
    with services.db.session() as session:
        if not repo.job_is_running(session, job_id) or repo.unit_done(session, job_id, index):
            return
    if not ctx.claims.take(job_id, index, if_broker_down=False):
        return
    try:
        with job_context(services, job_id):
            plan = pipeline.load_plan(services, job_id)
            if pipeline.render_unit(services, plan, index):
                log.info("job %s: line %d rendered by %s", job_id, index, ctx.token)
    except pipeline.JobLost:
        pass
    except Exception:
        # The coordinator renders the line itself, and reports the error if it happens again.
        log.exception("job %s: line %d failed here; left to the coordinator", job_id, index)
    finally:
        ctx.claims.release(job_id, index)


def run_worker(settings: Settings, concurrency: int) -> None:
    """`voicereel worker`: a Celery worker with `concurrency` processes, plus a sweeper."""
    app = make_celery_app(settings)
    sweeper: list[Sweeper] = []

    @worker_process_init.connect(weak=False)
    def _start_process(**_: Any) -> None:
        for running in sweeper:  # a process forked from the main one must not use its pool
            running.services.db.engine.dispose(close=False)
        ctx = worker_context(settings, app)
        ctx.services.engine.warm_up()
        log.info("rendering process %s ready", ctx.token)

    @worker_ready.connect(weak=False)
    def _start_sweeper(**_: Any) -> None:
        services = build_services(settings)
        # An app of its own: this thread publishes beside the consumer's event loop.
        publisher = make_celery_app(settings)
        sweeper.append(Sweeper(services, Dispatcher(publisher, broker_client(settings),
                                                    settings)))
        sweeper[0].start()

    @worker_shutdown.connect(weak=False)
    def _stop_sweeper(**_: Any) -> None:
        for running in sweeper:
            running.stop()

    app.worker_main(["worker", f"--concurrency={concurrency}", "--pool=prefork",
                     f"--queues={QUEUE}", "--loglevel=INFO", "--without-gossip",
                     "--without-mingle", f"--hostname=voicereel-{os.getpid()}@%h"])
