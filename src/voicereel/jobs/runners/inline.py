"""The embedded runner: a thread pool inside the API process, made durable by the jobs table."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from voicereel.jobs.leases import LeaseKeeper
from voicereel.jobs.pipeline import ThreadedLines, run_job
from voicereel.jobs.sweep import Sweeper
from voicereel.services import Services

log = logging.getLogger(__name__)


class InlineRunner:
    """Runs jobs on `settings.workers` threads, each rendering `line_threads` lines at once.

    The sweep hands it queued jobs (also those accepted before a restart) and running jobs
    whose lease expired because the process that held them died.
    """

    name = "inline"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.leases = LeaseKeeper(services)
        self.lines = ThreadedLines(services.settings.line_threads)
        self._sweeper = Sweeper(services, self._dispatch)
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[str] = set()
        self._waiting = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.services.settings.workers,
                                        thread_name_prefix="voicereel-job")
        self.leases.start()
        self._sweeper.start()

    def submit(self, job_id: str) -> None:
        self._dispatch(job_id, 0)

    def _dispatch(self, job_id: str, _attempts: int) -> bool:
        with self._lock:
            if job_id in self._in_flight or self._pool is None:
                return False
            self._in_flight.add(job_id)
            self._waiting += 1
        self._pool.submit(self._run, job_id)
        return True

    def _run(self, job_id: str) -> None:
        with self._lock:
            self._waiting -= 1
        owner = self.leases.new_owner()
        try:
            with self.leases.holding(owner):
                run_job(self.services, job_id, owner, self.lines)
        except Exception:
            log.exception("job %s: runner caught an error", job_id)
        finally:
            with self._lock:
                self._in_flight.discard(job_id)

    def stop(self) -> None:
        self._sweeper.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.leases.stop()

    def ready(self) -> bool:
        return all(self.checks().values())

    def checks(self) -> dict[str, bool]:
        return {"runner": self._pool is not None and self._sweeper.alive()}

    def backlog(self) -> dict[str, int]:
        """Jobs handed to the pool that no thread has started yet."""
        with self._lock:
            return {"pool": self._waiting}
