"""Operations: Prometheus metrics, JSON logs, and a request id that follows a job to its worker.

Every HTTP request gets a request id (the caller's `X-Request-ID` when it is sane, else a new
one), echoed in the response header and carried by a context variable into every log line. A
job stores the id of the request that made it (`jobs.request_id`); `pipeline.run_job` wraps
an attempt in `job_log_context(job_id, request_id)` so that the worker's lines carry both ids.

Metrics live in one registry per app, so tests that build several apps count separately; the
job histograms are process-wide (the pipeline does not know which app it serves) and are
registered into each app's registry. Job and queue gauges are read at scrape time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicereel.db import repo
from voicereel.db.tables import utcnow
from voicereel.domain.jobs import JOB_STATES
from voicereel.engines import metrics as engine_metrics
from voicereel.jobs.runners.base import JobRunner
from voicereel.services import Services
from voicereel.settings import Settings
from voicereel.storage.metrics import STORAGE_ERRORS

REQUEST_ID_HEADER = "X-Request-ID"
# Which API process answered (its pid): with `serve --workers N` several share the port.
PROCESS_HEADER = "X-VoiceReel-Process"
# A caller's id is kept only if it is short and plain, so it is safe in logs and headers; the
# length matches the jobs.request_id column.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,100}")
# Probes and scrapes arrive every few seconds; their access lines would drown the rest.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# The method label takes only these; any other token a client sends counts as "other", so
# invented methods cannot grow the metric series without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                           "CONNECT"})

request_id_var: ContextVar[str | None] = ContextVar("voicereel_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("voicereel_job_id", default=None)

log = logging.getLogger(__name__)
access_log = logging.getLogger("voicereel.access")


def current_request_id() -> str | None:
    """The id of the request being served (or of the request that made the running job)."""
    return request_id_var.get()


@contextmanager
def job_log_context(job_id: str, request_id: str | None) -> Iterator[None]:
    """Log lines inside carry the job's id and the id of the request that submitted it."""
    job_token = job_id_var.set(job_id)
    request_token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(request_token)
        job_id_var.reset(job_token)


# --- logs ----------------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came through `extra=` (uvicorn's
# `color_message` repeats the message with terminal colour codes).
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime",
                                                                  "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids when known, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id_var), ("job_id", job_id_var)):
            value = var.get()
            if value:
                entry[name] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The development format, with the request and job ids appended when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={value}" for name, value in (("request_id", request_id_var.get()),
                                                      ("job_id", job_id_var.get())) if value]
        return f"{line} [{' '.join(ids)}]" if ids else line


def configure_logging(settings: Settings) -> None:
    """Send every logger's records to stderr in the format VOICEREEL_LOG_FORMAT names."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    # One line per outgoing HTTP call drowns everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --- metrics -------------------------------------------------------------------------------------

JOB_DURATION = Histogram(
    "voicereel_job_duration_seconds", "Time from a job's start to its stored result.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600), registry=None)
ENGINE_REAL_TIME_FACTOR = Histogram(
    "voicereel_engine_real_time_factor",
    "Seconds the engine spent rendering per second of audio it produced (below 1: faster "
    "than real time).",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, 10), registry=None)
# The job latency SLO is "under N x the audio's length" (deploy/prometheus): this is that ratio,
# queueing included, so a long script is not held to a short one's seconds.
JOB_DURATION_PER_AUDIO_SECOND = Histogram(
    "voicereel_job_duration_per_audio_second",
    "Seconds from a job's submission to its stored result per second of audio it produced.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30), registry=None)
WEBHOOK_ATTEMPTS = Counter(
    "voicereel_webhook_attempts", "Webhook delivery attempts by the delivery's state after it "
    "(delivered; pending: failed, another attempt is scheduled; failed: no attempts left).",
    ["state"], registry=None)


def observe_job_finished(seconds: float, audio_seconds: float, render_seconds: float) -> None:
    """Record one succeeded job: its duration, per audio second, and the engine's real-time
    factor."""
    JOB_DURATION.observe(max(0.0, seconds))
    if audio_seconds > 0:
        ENGINE_REAL_TIME_FACTOR.observe(max(0.0, render_seconds) / audio_seconds)
        JOB_DURATION_PER_AUDIO_SECOND.observe(max(0.0, seconds) / audio_seconds)


def observe_webhook_attempt(state: str) -> None:
    """Count one webhook attempt by the state it left the delivery in."""
    WEBHOOK_ATTEMPTS.labels(state).inc()


def serve_worker_metrics(port: int, multiprocess_dir: str, host: str = "0.0.0.0") -> None:
    """Serve on `port` the job histograms that a worker's pool processes record.

    The processes share their observations through files in `multiprocess_dir`
    (prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR must have named that
    directory before prometheus_client was first imported).
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir)
    start_http_server(port, addr=host, registry=registry)


class StateCollector(Collector):
    """Jobs by state and queue depth, read from the database (and the runner's own queue) at
    scrape time."""

    def __init__(self, services: Services, backlog: Callable[[], dict[str, int]]) -> None:
        self.services = services
        self.backlog = backlog

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("voicereel_jobs", "Jobs by state.", labels=["state"]),
                GaugeMetricFamily("voicereel_queue_depth", "Work waiting to be picked up.",
                                  labels=["source"]),
                GaugeMetricFamily("voicereel_queue_oldest_age_seconds",
                                  "How long the longest-waiting due job has been queued (0: "
                                  "none queued)."))

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would call collect(), and query the database, when the app
        # is built.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        try:
            with self.services.db.session() as session:
                counts = repo.count_jobs_by_status(session)
                waiting_since = repo.oldest_due_queued_at(session)
        except Exception:
            log.warning("metrics: the database did not answer", exc_info=True)
            return
        jobs, depth, age = self._families()
        for state in sorted(set(JOB_STATES) | counts.keys()):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        depth.add_metric(["database"], counts.get("queued", 0))
        for source, waiting in self.backlog().items():
            depth.add_metric([source], waiting)
        yield depth
        age.add_metric([], 0.0 if waiting_since is None
                       else max(0.0, (utcnow() - waiting_since).total_seconds()))
        yield age


class Metrics:
    """The registry of one app and the request metrics its middleware records."""

    def __init__(self, services: Services, runner: JobRunner) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "voicereel_http_requests", "HTTP requests answered, by route template.",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "voicereel_http_request_duration_seconds", "Time to answer, by route template.",
            ["method", "route"], registry=self.registry)
        for collector in (JOB_DURATION, ENGINE_REAL_TIME_FACTOR, JOB_DURATION_PER_AUDIO_SECOND,
                          WEBHOOK_ATTEMPTS, STORAGE_ERRORS, *engine_metrics.COLLECTORS,
                          StateCollector(services, runner.backlog)):
            self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ObservabilityMiddleware:
    """Request id in, request id out; a count, a latency and an access line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        process = (PROCESS_HEADER.lower().encode(), str(os.getpid()).encode())
        token = request_id_var.set(request_id)
        status = 500  # unless the app answers: an exception escapes as a 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                headers += [(b"x-request-id", request_id.encode()), process]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            # The id stays set: the server-error handler outside this middleware logs the crash
            # and answers it, both with the id (each request runs in a task of its own).
            self._record(scope, status, time.perf_counter() - started)
            raise
        self._record(scope, status, time.perf_counter() - started)
        request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path_format", None) or "unmatched"
        method = scope["method"]
        label = method if method in KNOWN_METHODS else "other"
        self.metrics.requests.labels(label, route, str(status)).inc()
        self.metrics.latency.labels(label, route).observe(elapsed)
        access_log.log(logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                       "%s %s %d %.1f ms", method, scope["path"], status, elapsed * 1000,
                       extra={"method": method, "path": scope["path"], "route": route,
                              "status": status, "duration_ms": round(elapsed * 1000, 2)})


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def install(app: FastAPI, services: Services, runner: JobRunner) -> None:
    """Give the app its metrics registry and the request-id and metrics middleware."""
    metrics = Metrics(services, runner)
    app.state.metrics = metrics
    # Added last, so it wraps every other middleware and sees every answer.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
