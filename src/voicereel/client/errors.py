"""The client's one exception tree.

Every problem the API answers (RFC 9457 `application/problem+json`) is raised as the `APIError`
subclass named by its `type`, falling back on its HTTP status for types this client does not
know yet. Transport failures and finished-but-unsuccessful jobs have their own branches:

    VoiceReelError
    ├── ConnectionFailed            the server could not be reached (after retries)
    ├── APIError                    the server answered a problem; .status .type .slug .detail
    │   ├── BadRequest (400)
    │   ├── Unauthorized (401)      a missing, wrong or revoked API key
    │   │   └── SignatureInvalid    a key that requires signed requests got a bad signature
    │   ├── Forbidden (403) ── UrlExpired, UrlInvalid
    │   ├── NotFound (404)
    │   ├── MethodNotAllowed (405)
    │   ├── Conflict (409)
    │   ├── PayloadTooLarge (413)
    │   ├── UnsupportedMediaType (415)
    │   ├── ValidationFailed (422)  .errors: the field problems
    │   │   ├── AudioUnreadable     (also when decoding took too long)
    │   │   └── ReferenceRejected   too little speech, silence, noise, a tone, too long
    │   ├── RateLimited (429)       .retry_after: seconds the server asked to wait, or None
    │   ├── ServiceUnavailable (503)
    │   └── ServerError (other 5xx)
    ├── JobFailed                   wait(): the job ended failed or canceled; .job
    └── WaitTimeout                 wait(): the job did not finish in time; .job
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from voicereel.client.models import Job

PROBLEM_BASE = "https://voicereel.dev/problems/"


class VoiceReelError(Exception):
    """Base of every error the client raises."""


class ConnectionFailed(VoiceReelError):
    """The server could not be reached, or the connection broke, after every retry."""


class APIError(VoiceReelError):
    """The server answered with a problem document (or an unexpected error status)."""

    default_status = 500

    def __init__(self, status: int, type: str, title: str, detail: str, *,
                 errors: list[dict[str, Any]] | None = None, instance: str = "",
                 headers: httpx.Headers | None = None, body: dict[str, Any] | None = None
                 ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail or title
        self.errors = errors or []
        self.instance = instance
        self.headers = headers or httpx.Headers()
        self.body = body or {}
        super().__init__(self._message())

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before trying again (Retry-After), or None."""
        return parse_retry_after(self.headers.get("retry-after"))

    @property
    def slug(self) -> str:
        """The problem type without its base URL, e.g. `reference-too-short`."""
        return self.type.removeprefix(PROBLEM_BASE)

    def _message(self) -> str:
        text = f"{self.status} {self.title}: {self.detail}" if self.detail != self.title \
            else f"{self.status} {self.title}"
        if self.errors:
            text += "".join(f"\n  {_loc(e)}{e.get('msg', '')}" for e in self.errors)
        return text


def _loc(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", []) if part != "body"]
    return f"{'.'.join(loc)}: " if loc else ""


class BadRequest(APIError):
    default_status = 400


class Unauthorized(APIError):
    default_status = 401


class SignatureInvalid(Unauthorized):
    """Missing, stale, mismatched or replayed request signature; `slug` says which."""


class Forbidden(APIError):
    default_status = 403


class UrlExpired(Forbidden):
    """A download URL is past its expiry; fetch the job again for fresh URLs."""


class UrlInvalid(Forbidden):
    pass


class NotFound(APIError):
    default_status = 404


class MethodNotAllowed(APIError):
    default_status = 405


class Conflict(APIError):
    default_status = 409


class PayloadTooLarge(APIError):
    default_status = 413


class UnsupportedMediaType(APIError):
    default_status = 415


class ValidationFailed(APIError):
    """The request was understood but refused; `errors` lists each field's problem."""

    default_status = 422


class AudioUnreadable(ValidationFailed):
    pass


class ReferenceRejected(ValidationFailed):
    """The reference recording was refused; `slug` says why (e.g. `reference-silent`)."""


class RateLimited(APIError):
    """Too many requests; `retry_after` is the wait the server asked for, in seconds."""

    default_status = 429


class ServiceUnavailable(APIError):
    default_status = 503


class ServerError(APIError):
    default_status = 500


class JobFailed(VoiceReelError):
    """A waited-for job ended `failed` or `canceled`; `job` is its final state."""

    def __init__(self, job: Job) -> None:
        self.job = job
        reason = f": {job.error}" if job.error else ""
        super().__init__(f"job {job.id} {job.status}{reason}")


class WaitTimeout(VoiceReelError):
    """A waited-for job was still unfinished when the timeout ran out; `job` is its last state."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")


_BY_SLUG: dict[str, type[APIError]] = {
    "bad-request": BadRequest, "unauthorized": Unauthorized, "forbidden": Forbidden,
    "url-expired": UrlExpired, "url-invalid": UrlInvalid, "not-found": NotFound,
    "method-not-allowed": MethodNotAllowed, "conflict": Conflict,
    "payload-too-large": PayloadTooLarge, "unsupported-media-type": UnsupportedMediaType,
    "signature-invalid": SignatureInvalid, "signature-missing": SignatureInvalid,
    "signature-stale": SignatureInvalid, "signature-mismatch": SignatureInvalid,
    "signature-replayed": SignatureInvalid,
    "validation-failed": ValidationFailed, "audio-unreadable": AudioUnreadable,
    "decode-timeout": AudioUnreadable,
    "not-enough-speech": ReferenceRejected, "reference-silent": ReferenceRejected,
    "reference-noise": ReferenceRejected, "reference-tone": ReferenceRejected,
    "reference-too-short": ReferenceRejected, "reference-too-long": ReferenceRejected,
    "rate-limited": RateLimited, "service-unavailable": ServiceUnavailable,
}
_BY_STATUS: dict[int, type[APIError]] = {
    cls.default_status: cls for cls in (
        BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
        PayloadTooLarge, UnsupportedMediaType, ValidationFailed, RateLimited,
        ServiceUnavailable)
}


def error_class(status: int, problem_type: str) -> type[APIError]:
    """The exception class of a problem: by its type slug, else by its HTTP status."""
    by_slug = _BY_SLUG.get(problem_type.removeprefix(PROBLEM_BASE))
    if by_slug is not None:
        return by_slug
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status == 403:
        return Forbidden
    return ServerError if status >= 500 else APIError


def from_response(response: httpx.Response) -> APIError:
    """The exception for an error response, problem document or not."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(response.content) if response.content else {}
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    status = response.status_code
    problem_type = str(body.get("type") or "about:blank")
    title = str(body.get("title") or response.reason_phrase or "Error")
    detail = body.get("detail")
    if not isinstance(detail, str):
        detail = "" if body else response.text[:500]
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    cls = error_class(status, problem_type)
    return cls(status, problem_type, title, detail, errors=errors,
               instance=str(body.get("instance") or ""), headers=response.headers, body=body)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
