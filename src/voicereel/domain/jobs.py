"""The states of a job, in one place."""

from __future__ import annotations

from typing import Literal

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
JOB_STATES: tuple[JobStatus, ...] = ("queued", "running", "succeeded", "failed", "canceled")
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "canceled")
# A job's callback is sent when it reaches one of these (a canceled job was the customer's act).
CALLBACK_STATES: tuple[JobStatus, ...] = ("succeeded", "failed")
