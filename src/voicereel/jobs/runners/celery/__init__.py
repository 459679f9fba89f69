"""The distributed runner: jobs published to Redis, rendered by `voicereel worker` processes.

API side: `CeleryRunner` publishes committed jobs (`dispatch.py`) and sweeps for what nobody
runs. Worker side (`worker.py`): the `run_job` task is `pipeline.run_job` with lines rendered
as `render_unit` tasks on any worker (`claims.py` says who renders which line).
"""

from __future__ import annotations

import logging

from voicereel.jobs.runners.celery.app import BROKER_ERRORS, QUEUE, broker_client, make_celery_app
from voicereel.jobs.runners.celery.dispatch import Dispatcher
from voicereel.jobs.runners.celery.worker import run_worker
from voicereel.jobs.sweep import Sweeper
from voicereel.services import Services

log = logging.getLogger(__name__)

__all__ = ["CeleryRunner", "run_worker"]


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
        self._sweeper = Sweeper(services, self.dispatcher.sweep_dispatch, BROKER_ERRORS)

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
        return all(self.checks().values())

    def checks(self) -> dict[str, bool]:
        """The sweeper runs, and Redis answers."""
        try:
            broker = bool(self.broker.ping())
        except BROKER_ERRORS:
            broker = False
        return {"runner": self._sweeper.alive(), "broker": broker}

    def backlog(self) -> dict[str, int]:
        """Messages waiting in the broker's queue (not those being worked on)."""
        try:
            return {"broker": int(self.broker.llen(QUEUE))}
        except BROKER_ERRORS:
            log.warning("metrics: the broker did not answer", exc_info=True)
            return {}
