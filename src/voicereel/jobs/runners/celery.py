"""The distributed runner, API side: publish jobs to Redis for `voicereel worker` processes.

How the workers share a job (claims, leases, fanned-out lines) is described in
`voicereel.jobs.celery_app`.
"""

from __future__ import annotations

import logging

from voicereel.jobs.celery_app import (
    BROKER_ERRORS,
    Dispatcher,
    Sweeper,
    broker_client,
    make_celery_app,
)
from voicereel.jobs.services import Services

log = logging.getLogger(__name__)


class CeleryRunner:
    """Publishes committed jobs; a sweeper re-sends what was never sent or whose worker died.

    When Redis is down, `submit` still returns: the job is accepted (its row is committed) and
    the sweep publishes it once Redis answers again.
    """

    name = "celery"

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.broker = broker_client(settings)
        self.dispatcher = Dispatcher(make_celery_app(settings), self.broker, settings)
        self._sweeper = Sweeper(services, self.dispatcher)

    def start(self) -> None:
        self._sweeper.start()

    def submit(self, job_id: str) -> None:
        try:
            self.dispatcher.dispatch(job_id, 0, unless_recent=False)
        except BROKER_ERRORS as exc:
            log.warning("job %s accepted while the broker is unreachable (%s); the sweep "
                        "dispatches it when the broker is back", job_id, exc)

    def stop(self) -> None:
        self._sweeper.stop()

    def ready(self) -> bool:
        """True while the sweeper runs and Redis answers."""
        try:
            return self._sweeper.alive() and bool(self.broker.ping())
        except BROKER_ERRORS:
            return False
