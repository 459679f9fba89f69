"""The embedded runner: a thread pool inside the API process, made durable by the jobs table."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from voicereel.db import repo
from voicereel.jobs.pipeline import run_job
from voicereel.jobs.services import Services
from voicereel.observability import job_context
from voicereel.webhooks import deliver_job_webhook

log = logging.getLogger(__name__)


class InlineRunner:
    """Runs jobs on `settings.workers` threads; a sweeper re-dispatches what nobody runs.

    The sweeper finds queued jobs (also those accepted before a restart) and running jobs whose
    lease expired because the process that held them died; each attempt is owned by this
    process's unique id, so a job is never rendered by two attempts to completion.
    """

    name = "inline"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        settings = self.services.settings
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="voicereel-job")
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="voicereel-sweeper",
                                         daemon=True)
        self._sweeper.start()

    def submit(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._in_flight or self._pool is None:
                return
            self._in_flight.add(job_id)
        self._pool.submit(self._run, job_id)

    def _run(self, job_id: str) -> None:
        try:
            with job_context(self.services, job_id):
                run_job(self.services, job_id, self.owner)
                deliver_job_webhook(self.services, job_id)
        except Exception:
            log.exception("job %s: runner caught an error", job_id)
        finally:
            with self._lock:
                self._in_flight.discard(job_id)

    def sweep(self) -> None:
        """Dispatch every job that should run, and keep this process's leases alive."""
        settings = self.services.settings
        with self.services.db.session() as session:
            repo.extend_leases(session, self.owner, settings.job_lease_seconds)
            repo.fail_exhausted_jobs(session, settings.max_attempts)
            job_ids = repo.dispatchable_job_ids(session)
        for job_id in job_ids:
            self.submit(job_id)

    def _sweep_loop(self) -> None:
        interval = self.services.settings.sweep_interval_seconds
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", interval)
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def ready(self) -> bool:
        return self._pool is not None and self._sweeper is not None and self._sweeper.is_alive()
