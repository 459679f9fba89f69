"""What the sync and async clients share: configuration, request building, retry policy.

Each API operation is described once as a `Call` (method, path, body, how to read the answer);
the two clients differ only in how they send it and how they sleep between attempts.
"""

from __future__ import annotations

import os
import random
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from voicereel import __version__
from voicereel.client import models
from voicereel.client.errors import (
    PROBLEM_BASE,
    ConnectionFailed,
    VoiceReelError,
    parse_retry_after,
)
from voicereel.client.signing import RequestSigner

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "VOICEREEL_URL"
API_KEY_ENV = "VOICEREEL_API_KEY"
SIGNING_SECRET_ENV = "VOICEREEL_API_SIGNING_SECRET"
CA_FILE_ENV = "VOICEREEL_CA_FILE"
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
IDEMPOTENCY_HEADER = "Idempotency-Key"
CAPTION_REPORT = "report"  # a job's caption quality report: read by URL, not downloaded
# Failures where the request cannot have reached the server, so even a POST may be sent again.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

AudioInput = bytes | str | os.PathLike[str] | IO[bytes]
# caption formats (["vtt", "srt"]), or the options: {"formats": [...], "style": "bbc", ...}
Captions = Sequence[str] | Mapping[str, Any] | None


@dataclass
class Call(Generic[T]):
    """One API request and how to turn its successful answer into a result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def idempotent(self) -> bool:
        """Safe to send twice: by its method, or because it carries an Idempotency-Key."""
        return self.method in IDEMPOTENT_METHODS or IDEMPOTENCY_HEADER in self.headers


def tls_verification(verify: bool | str | None) -> bool | ssl.SSLContext:
    """What the HTTP client checks a server's certificate against: the system's CAs (True),
    nothing (False, e.g. a development certificate), or the CA file given (or named by
    VOICEREEL_CA_FILE)."""
    if verify is None:
        verify = os.environ.get(CA_FILE_ENV) or True
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _none(_: httpx.Response) -> None:
    return None


def _parser(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return model.model_validate(response.json())

    return parse


class BaseClient:
    """Configuration and policy shared by `VoiceReel` and `AsyncVoiceReel`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 max_retry_wait: float = 60.0, signing_secret: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key:
            raise ValueError(f"no API key: pass api_key=... or set {API_KEY_ENV}")
        self.api_key = key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        secret = signing_secret if signing_secret is not None \
            else os.environ.get(SIGNING_SECRET_ENV)
        self._signer = RequestSigner(secret) if secret else None

    # --- policy -------------------------------------------------------------------------

    def _sign(self, request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {self.api_key}"
        if self._signer is not None:
            self._signer.sign(request)
        return request

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so clients refused together do not return together."""
        return float(self.backoff * (2 ** attempt) * random.uniform(0.5, 1.0))

    def _retry_delay(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before sending again, or None when this answer is final."""
        if attempt >= self.max_retries:
            return None
        slug = _problem_slug(response)
        if slug == "signature-replayed" and self._signer is not None:
            # Signatures carry whole seconds, so an identical request within the same second
            # (a quick poll, a retry) repeats one; signed again a second later it is new.
            return 1.0 - time.time() % 1.0 + 0.01
        if slug == "idempotency-key-in-use":
            return self._backoff_delay(attempt)
        if response.status_code not in RETRY_STATUSES:
            return None
        asked = parse_retry_after(response.headers.get("retry-after"))
        if asked is None:
            return self._backoff_delay(attempt)
        # A wait longer than we are willing to sit through is the caller's decision.
        return asked if asked <= self.max_retry_wait else None

    def _transport_retry_delay(self, attempt: int, call_idempotent: bool,
                               exc: httpx.TransportError) -> float | None:
        if attempt >= self.max_retries:
            return None
        if call_idempotent or isinstance(exc, NOT_SENT_ERRORS):
            return self._backoff_delay(attempt)
        return None

    def _connection_failed(self, exc: httpx.TransportError) -> ConnectionFailed:
        reason = str(exc) or type(exc).__name__
        return ConnectionFailed(f"cannot reach VoiceReel at {self.base_url}: {reason}")

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    @staticmethod
    def _user_agent() -> str:
        return f"voicereel-python/{__version__}"

    # --- the operations -----------------------------------------------------------------

    @staticmethod
    def _create_speaker(name: str, audio: AudioInput, transcript: str, lang: str,
                        filename: str | None, idempotency_key: str | None
                        ) -> Call[models.Speaker]:
        data, default_name = _read_audio(audio)
        upload_name = filename or default_name
        return Call("POST", "/v1/speakers", _parser(models.Speaker),
                    data={"name": name, "transcript": transcript, "lang": lang},
                    files={"audio": (upload_name, data, "application/octet-stream")},
                    headers=_idempotency(idempotency_key))

    @staticmethod
    def _list_speakers(limit: int | None, cursor: str | None) -> Call[models.SpeakerPage]:
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        return Call("GET", "/v1/speakers", _parser(models.SpeakerPage), params=params)

    @staticmethod
    def _get_speaker(speaker_id: str) -> Call[models.Speaker]:
        return Call("GET", f"/v1/speakers/{_segment(speaker_id)}", _parser(models.Speaker))

    @staticmethod
    def _delete_speaker(speaker_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/speakers/{_segment(speaker_id)}", _none)

    @staticmethod
    def _synthesize(script: Sequence[Mapping[str, Any]], format: str | None,
                    sample_rate: int | None, captions: Captions,
                    output: Mapping[str, Any] | None, idempotency_key: str | None
                    ) -> Call[models.JobAccepted]:
        body: dict[str, Any] = {"script": [dict(line) for line in script]}
        out = dict(output or {})
        if format is not None:
            out["format"] = format
        if sample_rate is not None:
            out["sample_rate"] = sample_rate
        if out:
            body["output"] = out
        if captions is not None:
            body["captions"] = _captions(captions)
        return Call("POST", "/v1/synthesize", _parser(models.JobAccepted), json=body,
                    headers=_idempotency(idempotency_key))

    @staticmethod
    def _get_job(job_id: str) -> Call[models.Job]:
        return Call("GET", f"/v1/jobs/{_segment(job_id)}", _parser(models.Job))

    @staticmethod
    def _revise(job_id: str, edits: Sequence[Mapping[str, Any]],
                output: Mapping[str, Any] | None, captions: Captions,
                idempotency_key: str | None) -> Call[models.RevisionAccepted]:
        body: dict[str, Any] = {"edits": [dict(edit) for edit in edits]}
        if output is not None:
            body["output"] = dict(output)
        if captions is not None:
            body["captions"] = _captions(captions)
        return Call("POST", f"/v1/jobs/{_segment(job_id)}/revisions",
                    _parser(models.RevisionAccepted), json=body,
                    headers=_idempotency(idempotency_key))

    @staticmethod
    def _revisions(job_id: str) -> Call[models.RevisionList]:
        return Call("GET", f"/v1/jobs/{_segment(job_id)}/revisions",
                    _parser(models.RevisionList))

    @staticmethod
    def _get_revision(job_id: str, number: int) -> Call[models.Revision]:
        return Call("GET", f"/v1/jobs/{_segment(job_id)}/revisions/{int(number)}",
                    _parser(models.Revision))

    @staticmethod
    def _delete_job(job_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/jobs/{_segment(job_id)}", _none)

    @staticmethod
    def _usage(month: str | None) -> Call[models.Usage]:
        return Call("GET", "/v1/usage", _parser(models.Usage),
                    params={"month": month} if month else None)

    @staticmethod
    def _create_key(role: str, name: str, expires_at: datetime | None,
                    rate_limit_per_minute: int | None, max_concurrent_jobs: int | None,
                    require_signature: bool) -> Call[models.ApiKeyCreated]:
        body: dict[str, Any] = {"role": role, "name": name,
                                "require_signature": require_signature}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        if rate_limit_per_minute is not None:
            body["rate_limit_per_minute"] = rate_limit_per_minute
        if max_concurrent_jobs is not None:
            body["max_concurrent_jobs"] = max_concurrent_jobs
        return Call("POST", "/v1/keys", _parser(models.ApiKeyCreated), json=body)

    @staticmethod
    def _list_keys() -> Call[models.ApiKeyList]:
        return Call("GET", "/v1/keys", _parser(models.ApiKeyList))

    @staticmethod
    def _revoke_key(key_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/keys/{_segment(key_id)}", _none)

    @staticmethod
    def _rotate_key(key_id: str, grace_seconds: int | None) -> Call[models.ApiKeyCreated]:
        body = {"grace_seconds": grace_seconds} if grace_seconds is not None else {}
        return Call("POST", f"/v1/keys/{_segment(key_id)}/rotate",
                    _parser(models.ApiKeyCreated), json=body)


def _problem_slug(response: httpx.Response) -> str:
    if "json" not in response.headers.get("content-type", ""):
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    problem_type = body.get("type") if isinstance(body, dict) else None
    return problem_type.removeprefix(PROBLEM_BASE) if isinstance(problem_type, str) else ""


def job_id_of(job: str | models.Job | models.JobAccepted | models.RevisionAccepted) -> str:
    if isinstance(job, models.Job):
        return job.id
    if isinstance(job, (models.JobAccepted, models.RevisionAccepted)):
        return job.job_id
    return job


def retake_edit(line: int, seed: int | None) -> dict[str, Any]:
    """The edit that renders one line again (with `seed`: that take)."""
    return {"line": line, "retake": True, **({"seed": seed} if seed is not None else {})}


def _captions(captions: Sequence[str] | Mapping[str, Any]) -> list[str] | dict[str, Any]:
    return dict(captions) if isinstance(captions, Mapping) else list(captions)


def _idempotency(key: str | None) -> dict[str, str]:
    """Every POST carries a key, so a retry after a lost answer cannot create a second one."""
    return {IDEMPOTENCY_HEADER: key or uuid.uuid4().hex}


def _segment(value: str) -> str:
    """A path segment; an id never needs escaping, and anything that would is refused."""
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"not a valid id: {value!r}")
    return value


def _read_audio(audio: AudioInput) -> tuple[bytes, str]:
    """The upload's bytes (held in memory so that a retry can send them again) and its name."""
    if isinstance(audio, bytes):
        return audio, "reference.wav"
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        return path.read_bytes(), path.name
    name = getattr(audio, "name", None)
    return audio.read(), Path(name).name if isinstance(name, str) else "reference.wav"


@dataclass
class DownloadPlan:
    """Which files of a succeeded job go where."""

    job_id: str
    targets: list[tuple[str, str, str, Path]]  # (kind, key, url, destination)

    def result(self) -> models.Downloads:
        audio = next(path for kind, _, _, path in self.targets if kind == "audio")
        captions = {key: p for kind, key, _, p in self.targets if kind == "captions"}
        stems = {key: p for kind, key, _, p in self.targets if kind == "stems"}
        return models.Downloads(audio=audio, captions=captions, stems=stems)


def plan_download(job: models.Job, directory: Path, captions: bool,
                  stems: bool) -> DownloadPlan:
    """Destinations named like the server names them: `<job id>-audio.wav`, ..."""
    result = job.result
    if job.status != "succeeded" or result is None:
        raise VoiceReelError(f"job {job.id} is {job.status}; only a succeeded job has files")
    audio_ext = _extension(result.audio.url, "audio")
    targets = [("audio", "audio", result.audio.url,
                directory / f"{job.id}-audio{audio_ext}")]
    if captions:
        targets += [("captions", fmt, link.url, directory / caption_file_name(job.id, fmt))
                    for fmt, link in result.captions.items() if fmt != CAPTION_REPORT]
    if stems:
        targets += [("stems", sid, link.url, directory / f"{job.id}-stem-{sid}{audio_ext}")
                    for sid, link in result.stems.items()]
    return DownloadPlan(job.id, targets)


def caption_file_name(job_id: str, kind: str) -> str:
    """`<job>-captions.vtt`, or for one speaker's track (`vtt:spk_1`) `<job>-captions-spk_1.vtt`."""
    fmt, _, speaker = kind.partition(":")
    return f"{job_id}-captions-{speaker}.{fmt}" if speaker else f"{job_id}-captions.{fmt}"


def _extension(url: str, stem: str) -> str:
    """The extension of the stored file (`.../audio.wav?...` -> `.wav`)."""
    path = httpx.URL(url).path
    name = path.rsplit("/", 1)[-1]
    if name.startswith(stem + "."):
        return "." + name.split(".", 1)[1]
    suffix = Path(name).suffix
    return suffix or ".bin"
