"""The Celery app of API processes and workers alike: its configuration and task names.

The job row is the truth; a message only says "run job X" or "render line i of job X".
Late acks, reject-on-worker-lost, prefetch 1 and a visibility timeout longer than
`max_job_seconds` make Redis hand a dead worker's message to another, as a backstop to the
sweep.
"""

from __future__ import annotations

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from voicereel.settings import Settings

QUEUE = "voicereel"
RUN_JOB = "voicereel.run_job"
RENDER_UNIT = "voicereel.render_unit"
# Everything a broken or restarted broker can raise at a publisher or a Redis client.
BROKER_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OperationalError, OSError)


def make_celery_app(settings: Settings) -> Celery:
    """A configured app without tasks: publishers send by name, `worker.py` registers them."""
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
    return app


def broker_client(settings: Settings) -> redis.Redis:
    """A Redis client on the broker for markers and claims, failing fast when it is away."""
    return redis.Redis.from_url(settings.broker_url,
                                socket_timeout=settings.broker_timeout_seconds,
                                socket_connect_timeout=settings.broker_timeout_seconds)
