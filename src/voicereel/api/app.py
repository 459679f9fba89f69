"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from voicereel import __version__, errors, observability
from voicereel.api import problems
from voicereel.api.body_guard import BodyGuard
from voicereel.api.routes import health, jobs, metrics, speakers
from voicereel.api.routes import openai_compat as openai_routes
from voicereel.api.routes import usage as usage_routes
from voicereel.api.routes import webhooks as webhook_routes
from voicereel.api.schemas import PROBLEM_RESPONSES
from voicereel.auth.ratelimit import RateLimiter
from voicereel.jobs.runners import make_runner
from voicereel.services import Services, build_services
from voicereel.settings import Settings, get_settings

# Multipart framing and form fields around the audio file.
BODY_OVERHEAD_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the app; the runner starts and the engine loads when the app starts."""
    settings = settings or get_settings()
    services = services or build_services(settings)

    runner = make_runner(services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model loads in the background so the port opens at once; /readyz tells when.
        warm_up = threading.Thread(target=services.engine.warm_up, name="engine-warm-up",
                                   daemon=True)
        warm_up.start()
        runner.start()
        try:
            yield
        finally:
            runner.stop()
            # A model still loading in native code when the interpreter exits aborts it.
            warm_up.join()

    app = FastAPI(title="VoiceReel Studio API", version=__version__, lifespan=lifespan,
                  description="Multi-speaker text-to-speech with time-synchronised captions.",
                  responses=PROBLEM_RESPONSES)
    app.state.services = services
    app.state.runner = runner
    app.state.rate_limiter = RateLimiter(settings)
    problems.install(app)
    # Counts body bytes as they arrive: 413 even without (or despite) a Content-Length.
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_upload_bytes + BODY_OVERHEAD_BYTES)

    @app.middleware("http")
    async def refuse_oversized_bodies(request: Request,
                                      call_next: Callable[[Request], Awaitable[Response]]
                                      ) -> Response:
        declared = request.headers.get("content-length")
        limit = settings.max_upload_bytes + BODY_OVERHEAD_BYTES
        if declared and declared.isdigit() and int(declared) > limit:
            return problems.problem_response(errors.PayloadTooLarge(
                f"the request body is larger than {limit} bytes"), request.url.path)
        return await call_next(request)

    for module in (speakers, jobs, health, metrics):
        app.include_router(module.router)
    downloads = services.storage.download_router()
    if downloads is not None:
        app.include_router(downloads)
    for trust_module in (usage_routes, webhook_routes):
        app.include_router(trust_module.router)
    app.include_router(openai_routes.router)
    observability.install(app, services, runner)  # last: its middleware wraps all the others
    return app
