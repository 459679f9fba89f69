"""JobRunner seam: `make_runner(services)` picks the implementation named by VOICEREEL_RUNNER."""

from __future__ import annotations

from voicereel.jobs.runners.base import JobRunner
from voicereel.services import Services
from voicereel.settings import Settings


def make_runner(services: Services) -> JobRunner:
    if services.settings.runner == "celery":
        from voicereel.jobs.runners.celery import CeleryRunner

        return CeleryRunner(services)
    from voicereel.jobs.runners.inline import InlineRunner

    return InlineRunner(services)


def run_worker(settings: Settings, concurrency: int) -> None:
    """`voicereel worker`: the processes that render jobs published by the distributed runner."""
    from voicereel.jobs.runners.celery import run_worker as run_celery_worker

    run_celery_worker(settings, concurrency)
