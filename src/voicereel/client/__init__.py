"""The VoiceReel Python SDK.

    from voicereel.client import VoiceReel

    with VoiceReel() as client:  # VOICEREEL_URL and VOICEREEL_API_KEY from the environment
        alice = client.create_speaker("Alice", "alice.wav", transcript="What Alice reads")
        job = client.synthesize([{"speaker_id": alice.id, "text": "Hello there."}])
        done = client.wait(job, on_progress=lambda j: print(f"{j.progress:.0%}"))
        files = client.download(done, "out/")

Errors are `voicereel.client.errors` classes (documented there as one tree).
"""

from voicereel.client._async import AsyncVoiceReel
from voicereel.client._client import VoiceReel
from voicereel.client.errors import (
    APIError,
    AudioUnreadable,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    JobFailed,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ReferenceRejected,
    ServerError,
    ServiceUnavailable,
    SignatureInvalid,
    Unauthorized,
    UnsupportedMediaType,
    UrlExpired,
    UrlInvalid,
    ValidationFailed,
    VoiceReelError,
    WaitTimeout,
)
from voicereel.client.models import (
    Downloads,
    FileLink,
    Job,
    JobAccepted,
    JobResult,
    Speaker,
    SpeakerPage,
    Usage,
)

__all__ = [
    "APIError", "AsyncVoiceReel", "AudioUnreadable", "BadRequest", "Conflict",
    "ConnectionFailed", "Downloads", "FileLink", "Forbidden", "Job", "JobAccepted", "JobFailed",
    "JobResult", "MethodNotAllowed", "NotFound", "PayloadTooLarge", "RateLimited",
    "ReferenceRejected", "ServerError", "ServiceUnavailable", "SignatureInvalid", "Speaker",
    "SpeakerPage", "Unauthorized", "UnsupportedMediaType", "UrlExpired", "UrlInvalid", "Usage",
    "ValidationFailed", "VoiceReel", "VoiceReelError", "WaitTimeout",
]
