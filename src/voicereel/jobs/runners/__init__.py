"""JobRunner seam: `make_runner(services)` picks the implementation named by VOICEREEL_RUNNER."""

from __future__ import annotations

from voicereel.jobs.runners.base import JobRunner
from voicereel.jobs.services import Services


def make_runner(services: Services) -> JobRunner:
    if services.settings.runner == "celery":
        from voicereel.jobs.runners.celery import CeleryRunner

        return CeleryRunner(services)
    from voicereel.jobs.runners.inline import InlineRunner

    return InlineRunner(services)
