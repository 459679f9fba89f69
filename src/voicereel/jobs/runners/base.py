"""The JobRunner seam: something that eventually calls `pipeline.run_job(job_id)`."""

from __future__ import annotations

from typing import Protocol


class JobRunner(Protocol):
    """Implementations: `inline` (threads in the API process) and `celery` (Redis + workers).

    The jobs table is the truth; `submit` only says "look at job X". A runner must also find
    jobs that were committed but never dispatched, or left running by a dead process (it runs
    `jobs.sweep`). Runners differ only in where a job's lines render.
    """

    name: str

    def start(self) -> None: ...

    def submit(self, job_id: str) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> bool:
        """True when every one of `checks()` passes."""
        ...

    def checks(self) -> dict[str, bool]:
        """Readiness of the runner's parts, by name (e.g. its sweeper, its broker)."""
        ...

    def backlog(self) -> dict[str, int]:
        """Work waiting in the runner's own queues, by source (besides queued job rows)."""
        ...
