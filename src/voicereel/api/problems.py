"""The one place where errors become HTTP answers: RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicereel import errors
from voicereel.observability import REQUEST_ID_HEADER, current_request_id

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"

_BY_STATUS: dict[int, type[errors.VoiceReelError]] = {
    400: errors.BadRequest, 401: errors.Unauthorized, 403: errors.Forbidden,
    404: errors.NotFound, 405: errors.MethodNotAllowed, 409: errors.Conflict,
    413: errors.PayloadTooLarge, 415: errors.UnsupportedMediaType,
    422: errors.ValidationFailed, 429: errors.RateLimited, 503: errors.ServiceUnavailable,
}


def problem_response(exc: errors.VoiceReelError, instance: str = "") -> JSONResponse:
    body: dict[str, Any] = {"type": exc.type, "title": exc.title, "status": exc.status,
                            "detail": exc.detail}
    if instance:
        body["instance"] = instance
    if exc.errors:
        body["errors"] = exc.errors
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON,
                        headers=exc.headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()]


def install(app: FastAPI) -> None:
    """Register the handlers that render every error of the app."""

    @app.exception_handler(errors.VoiceReelError)
    async def _ours(request: Request, exc: errors.VoiceReelError) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(errors.ValidationFailed(
            "the request is not valid; see errors", errors=_field_errors(exc)), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = _BY_STATUS.get(exc.status_code, errors.VoiceReelError)
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        problem = cls(detail, headers=dict(exc.headers or {}))
        problem.status = exc.status_code
        return problem_response(problem, request.url.path)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = problem_response(errors.VoiceReelError("an internal error occurred"),
                                    request.url.path)
        # Answered outside the request-id middleware, so the id is added here.
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
