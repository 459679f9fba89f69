"""The FastAPI application factory."""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from voicereel import __version__, observability, operations, webhooks
from voicereel.api import deps, problems
from voicereel.api.audit import AuditLog
from voicereel.api.body_guard import BodyGuard
from voicereel.api.hsts import StrictTransport
from voicereel.api.routes import audit as audit_routes
from voicereel.api.routes import health, jobs, keys, languages, lexicons, metrics, speakers
from voicereel.api.routes import openai_compat as openai_routes
from voicereel.api.routes import usage as usage_routes
from voicereel.api.routes import webhooks as webhook_routes
from voicereel.api.schemas import PROBLEM_RESPONSES
from voicereel.auth.keys import KeyCache, KeyUses
from voicereel.auth.ratelimit import RateLimiter
from voicereel.jobs.runners import make_runner
from voicereel.services import Services, build_services
from voicereel.settings import Settings, get_settings
from voicereel.studio import mount as mount_studio


def create_app(settings: Settings | None = None, services: Services | None = None,
               whole_process: bool = False) -> FastAPI:
    """Build the app; the runner starts and the engine loads when the app starts.

    `whole_process`: the app is its process's until it exits (`voicereel serve`); what is
    loaded by the end of the warm-up is then taken out of the garbage collector's sight.
    """
    settings = settings or get_settings()
    services = services or build_services(settings)

    runner = make_runner(services)
    key_uses = KeyUses(services)
    key_check = deps.KeyCheck(services, key_uses,
                              KeyCache(settings.auth_cache_seconds, settings.auth_cache_max_keys))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        # The model loads in the background so the port opens at once; /readyz tells when.
        warm_up = threading.Thread(
            target=functools.partial(_warm_up, services, freeze=whole_process),
            name="engine-warm-up", daemon=True)
        warm_up.start()
        runner.start()
        key_uses.start()
        try:
            yield
        finally:
            key_uses.stop()
            runner.stop()
            webhooks.stop_sending(services)  # deliveries left waiting stay due in the outbox
            # A model still loading in native code when the interpreter exits aborts it.
            warm_up.join()

    app = FastAPI(title="VoiceReel Studio API", version=__version__, lifespan=lifespan,
                  description="Multi-speaker text-to-speech with time-synchronised captions.",
                  responses=PROBLEM_RESPONSES)
    app.state.services = services
    app.state.runner = runner
    app.state.rate_limiter = RateLimiter(settings)
    app.state.key_uses = key_uses
    app.state.key_check = key_check
    problems.install(app)
    # Keys from headers first, then per-route body limits counted as the bytes arrive.
    app.add_middleware(BodyGuard, identify=key_check,
                       max_upload_bytes=settings.max_upload_bytes,
                       max_json_body_bytes=settings.max_json_body_bytes)
    # Outside the guard: it logs what the guard refused of a known key, too.
    app.add_middleware(AuditLog, services=services)
    app.add_middleware(StrictTransport, max_age_seconds=settings.hsts_max_age_seconds)

    for module in (speakers, jobs, languages, lexicons, health, metrics):
        app.include_router(module.router)
    services.storage.mount_downloads(
        app, functools.partial(operations.stored_key_is_live, services))
    for trust_module in (usage_routes, webhook_routes):
        app.include_router(trust_module.router)
    app.include_router(openai_routes.router)
    app.include_router(keys.router)
    app.include_router(audit_routes.router)
    mount_studio(app, settings)
    observability.install(app, services, runner)  # last: its middleware wraps all the others
    return app



def _warm_up(services: Services, freeze: bool) -> None:
    try:
        services.engine.warm_up()
    finally:
        if freeze:
            # The app's and the model's objects live as long as the process. Left to the
            # collector, each full collection walked them all (about 220,000: 140-310 ms with
            # the event loop stopped, several times a minute under load, the polls' p99);
            # frozen, it walks only what came after.
            gc.collect()
            gc.freeze()
