"""The sweep: every runner's periodic look for work that nobody does.

It fails jobs whose every attempt died, and dispatches each queued job (whose retry time has
come) and each running job whose lease ran out: a job committed but never handed over (a
crash in between, a broker outage), a job whose worker died, a job put back by `RetryLater`.
A runner says what "dispatch" means (hand to this process's pool, or publish to the broker);
dispatching a job twice is harmless, because only one attempt can claim it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from voicereel import audit, outbox
from voicereel.db import repo
from voicereel.services import Services

log = logging.getLogger(__name__)

# dispatch(job_id, attempts) -> True when the job was handed on now
Dispatch = Callable[[str, int], bool]


def sweep(services: Services, dispatch: Dispatch) -> int:
    """One pass; returns how many jobs were dispatched."""
    with services.db.session() as session:
        repo.fail_exhausted_jobs(session, services.settings.max_attempts)
        candidates = repo.dispatchable_jobs(session)
    outbox.sweep(services)
    audit.prune(services)
    return sum(dispatch(job_id, attempts) for job_id, attempts in candidates)


class Sweeper:
    """A thread that sweeps every `sweep_interval_seconds` until stopped.

    Errors of the kinds in `expected_errors` (a broker that is away) are logged without a
    traceback; the next pass tries again.
    """

    def __init__(self, services: Services, dispatch: Dispatch,
                 expected_errors: tuple[type[BaseException], ...] = ()) -> None:
        self.services = services
        self.dispatch = dispatch
        self.expected_errors = expected_errors
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="voicereel-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        interval = self.services.settings.sweep_interval_seconds
        while not self._stop.is_set():
            try:
                sent = sweep(self.services, self.dispatch)
                if sent:
                    log.debug("sweep dispatched %d job(s)", sent)
            except self.expected_errors as exc:
                log.warning("sweep: %s; trying again in %.0f s", exc, interval)
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", interval)
            self._stop.wait(interval)
