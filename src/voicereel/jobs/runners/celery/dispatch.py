"""Publishing "run job X", and remembering for a while that it was published.

`dispatch` publishes `voicereel.run_job` and sets a Redis marker
`voicereel:dispatched:<job>:<attempts>` that lives `redispatch_seconds`. The API dispatches a
job after its row is committed; the sweep (in every API process and in every worker's main
process) dispatches what has no live marker, so a message that died with a worker or with
Redis is sent again.
"""

from __future__ import annotations

import contextlib

import redis
from celery import Celery

from voicereel.jobs.runners.celery.app import BROKER_ERRORS, RUN_JOB
from voicereel.settings import Settings


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

    def sweep_dispatch(self, job_id: str, attempts: int) -> bool:
        """What the sweep calls: publish unless recently published."""
        return self.dispatch(job_id, attempts, unless_recent=True)
