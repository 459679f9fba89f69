"""`VoiceReel`: the synchronous client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from voicereel.client import models
from voicereel.client._base import (
    AudioInput,
    BaseClient,
    Call,
    Captions,
    DownloadPlan,
    job_id_of,
    plan_download,
    retake_edit,
    tls_verification,
)
from voicereel.client.errors import JobFailed, UrlExpired, WaitTimeout, from_response

T = TypeVar("T")
JobRef = str | models.Job | models.JobAccepted | models.RevisionAccepted


class VoiceReel(BaseClient):
    """Synchronous VoiceReel client.

    `base_url` and `api_key` default to `VOICEREEL_URL` and `VOICEREEL_API_KEY`. Requests answered
    429 or 503, and connection failures, are retried up to `max_retries` times with exponential
    backoff, waiting as long as a `Retry-After` header asks (up to `max_retry_wait` seconds). Pass
    `transport` (any `httpx.BaseTransport`) to route requests elsewhere, e.g. in tests. `verify`
    is a CA file to check an https server's certificate with (default: `VOICEREEL_CA_FILE`,
    else the system's CAs), or False to check none. Errors are raised as
    `voicereel.client.errors` classes.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 max_retry_wait: float = 60.0, signing_secret: str | None = None,
                 verify: bool | str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries,
                         backoff=backoff, max_retry_wait=max_retry_wait,
                         signing_secret=signing_secret)
        self._http = httpx.Client(transport=transport, timeout=timeout,
                                  verify=tls_verification(verify),
                                  headers={"User-Agent": self._user_agent()})
        self._sleep: Callable[[float], None] = time.sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VoiceReel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- sending ------------------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        def build() -> httpx.Request:
            return self._sign(self._http.build_request(
                call.method, self._url(call.path), params=call.params, json=call.json,
                data=call.data, files=call.files, headers=call.headers))

        response = self._send(build, call.idempotent)
        return call.parse(response)

    def _send(self, build: Callable[[], httpx.Request], idempotent: bool,
              stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.send(build(), stream=stream)
            except httpx.TransportError as exc:
                delay = self._transport_retry_delay(attempt, idempotent, exc)
                if delay is None:
                    raise self._connection_failed(exc) from exc
            else:
                if not response.is_error:
                    return response
                response.read()
                response.close()
                delay = self._retry_delay(attempt, response)
                if delay is None:
                    raise from_response(response)
            self._sleep(delay)
            attempt += 1

    # --- speakers -----------------------------------------------------------------------

    def create_speaker(self, name: str, audio: AudioInput, *, transcript: str = "",
                       lang: str = "en", filename: str | None = None,
                       idempotency_key: str | None = None) -> models.Speaker:
        """Register a voice from a reference recording (a path, bytes or a binary file)."""
        return self._run(self._create_speaker(name, audio, transcript, lang, filename,
                                              idempotency_key))

    def list_speakers(self, *, limit: int | None = None,
                      cursor: str | None = None) -> models.SpeakerPage:
        """One page of speakers, newest first."""
        return self._run(self._list_speakers(limit, cursor))

    def iter_speakers(self, *, page_size: int = 100) -> Iterator[models.Speaker]:
        """Every speaker of the account, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_speakers(limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_speaker(self, speaker_id: str) -> models.Speaker:
        return self._run(self._get_speaker(speaker_id))

    def delete_speaker(self, speaker_id: str) -> None:
        """Remove a speaker and its reference audio."""
        self._run(self._delete_speaker(speaker_id))

    # --- jobs ---------------------------------------------------------------------------

    def synthesize(self, script: Sequence[Mapping[str, Any]], *, format: str | None = None,
                   sample_rate: int | None = None, captions: Captions = None,
                   output: Mapping[str, Any] | None = None,
                   idempotency_key: str | None = None) -> models.JobAccepted:
        """Submit a script (`[{"speaker_id": ..., "text": ...}, ...]`); returns the queued job.

        `format` and `sample_rate` override the same keys of `output`; anything left out takes
        the server's default (wav, 24 kHz, every caption format).
        """
        return self._run(self._synthesize(script, format, sample_rate, captions, output,
                                          idempotency_key))

    def get_job(self, job: JobRef) -> models.Job:
        return self._run(self._get_job(job_id_of(job)))

    def revise(self, job: JobRef, edits: Sequence[Mapping[str, Any]], *,
               output: Mapping[str, Any] | None = None,
               captions: Captions = None,
               idempotency_key: str | None = None) -> models.RevisionAccepted:
        """Fix lines of a finished job: only the lines the edits change render.

        Edits address the lines of the job's latest revision: `{"line": 3, "text": ...}`
        (any of text, speaker_id, speed, pause_after_ms, seed, lang), `{"line": 2, "retake": True}`,
        `{"insert_after": 5, "speaker_id": ..., "text": ...}`, `{"delete": 7}`. Output and
        captions default to the revision's. Wait for it like a job.
        """
        return self._run(self._revise(job_id_of(job), edits, output, captions,
                                      idempotency_key))

    def retake(self, job: JobRef, line: int, *, seed: int | None = None,
               idempotency_key: str | None = None) -> models.RevisionAccepted:
        """Render line `line` again, as a new take (with `seed`: that seed's take)."""
        return self.revise(job, [retake_edit(line, seed)],
                           idempotency_key=idempotency_key)

    def revisions(self, job: JobRef) -> list[models.Revision]:
        """Every revision of the job, oldest first; the last is the latest."""
        return (self._run(self._revisions(job_id_of(job)))).revisions

    def get_revision(self, job: JobRef, number: int) -> models.Revision:
        return self._run(self._get_revision(job_id_of(job), number))

    def delete_job(self, job: JobRef) -> None:
        """Cancel the job if unfinished and delete every stored file."""
        self._run(self._delete_job(job_id_of(job)))

    def wait(self, job: JobRef, *, on_progress: Callable[[models.Job], None] | None = None,
             poll_interval: float = 0.5, timeout: float | None = None,
             raise_on_failure: bool = True) -> models.Job:
        """Poll until the job finishes; `on_progress(job)` is called after every poll.

        Raises `JobFailed` when it ends failed or canceled (unless `raise_on_failure=False`)
        and `WaitTimeout` when `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_job(job)
            if on_progress is not None:
                on_progress(current)
            if current.finished:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(current, timeout or 0.0)
            self._sleep(poll_interval)
        if raise_on_failure and current.status != "succeeded":
            raise JobFailed(current)
        return current

    def download(self, job: JobRef, directory: str | Path, *, captions: bool = True,
                 stems: bool = True) -> models.Downloads:
        """Write a succeeded job's audio, captions and stems into `directory`.

        Files are named `<job id>-audio.<format>`, `<job id>-captions.<vtt|srt|json>` and
        `<job id>-stem-<speaker id>.<format>`. Expired URLs are renewed once by fetching the job.
        """
        current = job if isinstance(job, models.Job) else self.get_job(job)
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        plan = plan_download(current, target, captions, stems)
        try:
            self._fetch_all(plan)
        except UrlExpired:
            plan = plan_download(self.get_job(current.id), target, captions, stems)
            self._fetch_all(plan)
        return plan.result()

    def _fetch_all(self, plan: DownloadPlan) -> None:
        for _kind, _key, url, path in plan.targets:
            self._fetch(url, path)

    def _fetch(self, url: str, path: Path) -> None:
        # Download URLs carry their own signature; the API key must not travel to a file store.
        response = self._send(lambda: self._http.build_request("GET", self._url(url)),
                              idempotent=True, stream=True)
        partial = path.with_name(path.name + ".part")
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            partial.replace(path)
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
        finally:
            response.close()
            partial.unlink(missing_ok=True)

    # --- account ------------------------------------------------------------------------

    def usage(self, month: str | None = None) -> models.Usage:
        """Usage of one month (`YYYY-MM`; the current month by default)."""
        return self._run(self._usage(month))

    # --- keys (owner keys only) ---------------------------------------------------------

    def create_key(self, role: str, *, name: str = "", expires_at: datetime | None = None,
                   rate_limit_per_minute: int | None = None,
                   max_concurrent_jobs: int | None = None,
                   require_signature: bool = False) -> models.ApiKeyCreated:
        """A new key of this account; its `key` (and `signing_secret`) are shown only here.

        Not retried after a lost answer: a second attempt would make a second key.
        """
        return self._run(self._create_key(role, name, expires_at, rate_limit_per_minute,
                                          max_concurrent_jobs, require_signature))

    def list_keys(self) -> list[models.ApiKey]:
        return self._run(self._list_keys()).items

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key; its next request is refused (`401 key-revoked`)."""
        self._run(self._revoke_key(key_id))

    def rotate_key(self, key_id: str, *, grace_seconds: int | None = None
                   ) -> models.ApiKeyCreated:
        """A new secret for the key; the old one works `grace_seconds` more (at most 24 h)."""
        return self._run(self._rotate_key(key_id, grace_seconds))
