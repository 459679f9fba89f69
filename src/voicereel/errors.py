"""The one exception tree of VoiceReel.

Every error the service raises on purpose is a `VoiceReelError`. Each class carries its problem
type (a stable slug, rendered as `https://voicereel.dev/problems/<slug>`), a title and an HTTP
status; `api/problems.py` renders them once as RFC 9457 `application/problem+json`.

    VoiceReelError
    ├── BadRequest (400)
    ├── Unauthorized (401)  ── KeyExpired, KeyRevoked;
    │                          SignatureInvalid ── SignatureMissing, SignatureStale,
    │                                               SignatureMismatch, SignatureReplayed
    ├── Forbidden (403)  ── ScopeMissing, UrlExpired, UrlInvalid
    ├── NotFound (404)
    ├── Conflict (409)  ── IdempotencyKeyInUse, JobBusy, LastOwnerKey, KeyNotRotatable
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── ValidationFailed (422)  ── AudioUnreadable ── DecodeTimedOut; AudioUnsupported,
    │       ReferenceTooLong, IdempotencyKeyReused, CallbackUrlRefused, AudioTooLong,
    │       LanguageUnsupported,
    │       NotEnoughSpeech ── ReferenceSilent, ReferenceNoise, ReferenceTone, ReferenceTooShort
    ├── RateLimited (429)
    ├── ServiceUnavailable (503)  ── RetryLater ── StorageUnavailable, DecodeBusy
    └── SynthesisFailed (job error, never an HTTP answer by itself)
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://voicereel.dev/problems/"


class VoiceReelError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str = "", *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class BadRequest(VoiceReelError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(VoiceReelError):
    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class KeyExpired(Unauthorized):
    """The key passed its `expires_at` (or the grace period after it was rotated)."""

    slug, title = "key-expired", "The API key has expired"


class KeyRevoked(Unauthorized):
    slug, title = "key-revoked", "The API key was revoked"


class SignatureInvalid(Unauthorized):
    """A key that requires signed requests sent none, or a wrong, stale or replayed one."""

    slug, title = "signature-invalid", "The request signature is not valid"


class SignatureMissing(SignatureInvalid):
    slug, title = "signature-missing", "The request is not signed"


class SignatureStale(SignatureInvalid):
    slug, title = "signature-stale", "The request timestamp is outside the allowed window"


class SignatureMismatch(SignatureInvalid):
    slug, title = "signature-mismatch", "The request signature does not match"


class SignatureReplayed(SignatureInvalid):
    slug, title = "signature-replayed", "The request signature was already used"


class Forbidden(VoiceReelError):
    status, slug, title = 403, "forbidden", "Forbidden"


class ScopeMissing(Forbidden):
    """The key's role does not hold the scope the route needs (auth/roles.py)."""

    slug, title = "scope-missing", "The API key's role lacks the required scope"

    def __init__(self, detail: str = "", *, scope: str = "", role: str = "",
                 **kw: Any) -> None:
        if scope and not detail:
            detail = (f"this operation needs the scope '{scope}', which the key's role "
                      f"'{role}' does not have")
        super().__init__(detail, **kw)
        self.scope = scope


class UrlExpired(Forbidden):
    slug, title = "url-expired", "The download URL has expired"


class UrlInvalid(Forbidden):
    slug, title = "url-invalid", "The download URL signature is not valid"


class NotFound(VoiceReelError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(VoiceReelError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(VoiceReelError):
    status, slug, title = 409, "conflict", "Conflict"


class IdempotencyKeyInUse(Conflict):
    slug, title = "idempotency-key-in-use", "A request with this Idempotency-Key is in progress"


class JobBusy(Conflict):
    slug, title = "job-busy", "The job is still rendering"


class LastOwnerKey(Conflict):
    slug, title = "last-owner-key", "The tenant's last owner key cannot be removed"


class KeyNotRotatable(Conflict):
    slug, title = "key-not-rotatable", "The key is revoked, expired or already rotated"


class PayloadTooLarge(VoiceReelError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(VoiceReelError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(VoiceReelError):
    status, slug, title = 422, "validation-failed", "The request is not valid"


class AudioUnreadable(ValidationFailed):
    slug, title = "audio-unreadable", "The audio could not be decoded"


class DecodeTimedOut(AudioUnreadable):
    slug, title = "decode-timeout", "Decoding the audio took too long"


class AudioUnsupported(ValidationFailed):
    """The header declares a sample rate or channel count outside the accepted range."""

    slug, title = "audio-unsupported", "The audio's sample rate or channel count is not accepted"


class IdempotencyKeyReused(ValidationFailed):
    slug, title = "idempotency-key-reused", "The Idempotency-Key was used with another request"


class CallbackUrlRefused(ValidationFailed):
    slug, title = "callback-url-refused", "The callback URL is not allowed"


class AudioTooLong(ValidationFailed):
    """The audio a script asks for (estimated at submission, or counted while rendering) passes
    the configured limit; a job that passes it while rendering fails with this message."""

    slug, title = "audio-too-long", "The requested audio is longer than allowed"


class LanguageUnsupported(ValidationFailed):
    """A line's language is one the configured engine (and the fallback engine, if any) does
    not speak; `errors` name the lines and the engines that can."""

    slug, title = "language-unsupported", "The engine does not speak the line's language"


class NotEnoughSpeech(ValidationFailed):
    slug, title = "not-enough-speech", "The reference holds too little speech"


class ReferenceSilent(NotEnoughSpeech):
    slug, title = "reference-silent", "The reference is (nearly) silent"


class ReferenceNoise(NotEnoughSpeech):
    slug, title = "reference-noise", "The reference is noise, not speech"


class ReferenceTone(NotEnoughSpeech):
    slug, title = "reference-tone", "The reference is a steady tone, not speech"


class ReferenceTooShort(NotEnoughSpeech):
    slug, title = "reference-too-short", "The reference holds less speech than required"


class ReferenceTooLong(ValidationFailed):
    slug, title = "reference-too-long", "The reference recording is too long"


class RateLimited(VoiceReelError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(VoiceReelError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class RetryLater(ServiceUnavailable):
    """A transient failure (a store answering 5xx, every engine server busy): try again later.

    In a job it is control flow, as arq's `Retry(defer=...)`: the job goes back to the queue
    with its lease released and its stored line units kept, and runs again after `defer`
    seconds (counting as one attempt). In a request it answers 503 with `Retry-After`.
    """

    def __init__(self, detail: str = "", *, defer: float = 5.0, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, round(defer)))})
        super().__init__(detail, **kw)
        self.defer = defer


class StorageUnavailable(RetryLater):
    status, slug, title = 503, "storage-unavailable", "Storage temporarily unavailable"


class DecodeBusy(RetryLater):
    """Every upload-decoding slot is taken; the client should retry after `Retry-After`."""

    slug, title = "decode-busy", "Too many uploads are being decoded"


class SynthesisFailed(VoiceReelError):
    """A job could not be rendered; its message becomes the job's readable `error`."""

    status, slug, title = 500, "synthesis-failed", "Synthesis failed"
