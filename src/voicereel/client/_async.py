"""`AsyncVoiceReel`: the asynchronous client, method for method like `VoiceReel`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
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


class AsyncVoiceReel(BaseClient):
    """Asynchronous VoiceReel client; see `VoiceReel` for configuration, retries and errors.

    `on_progress` of `wait` may be a plain function or a coroutine function.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 max_retry_wait: float = 60.0, signing_secret: str | None = None,
                 verify: bool | str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries,
                         backoff=backoff, max_retry_wait=max_retry_wait,
                         signing_secret=signing_secret)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout,
                                       verify=tls_verification(verify),
                                       headers={"User-Agent": self._user_agent()})
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncVoiceReel:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # --- sending ------------------------------------------------------------------------

    async def _run(self, call: Call[T]) -> T:
        def build() -> httpx.Request:
            return self._sign(self._http.build_request(
                call.method, self._url(call.path), params=call.params, json=call.json,
                data=call.data, files=call.files, headers=call.headers))

        response = await self._send(build, call.idempotent)
        return call.parse(response)

    async def _send(self, build: Callable[[], httpx.Request], idempotent: bool,
                    stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.send(build(), stream=stream)
            except httpx.TransportError as exc:
                delay = self._transport_retry_delay(attempt, idempotent, exc)
                if delay is None:
                    raise self._connection_failed(exc) from exc
            else:
                if not response.is_error:
                    return response
                await response.aread()
                await response.aclose()
                delay = self._retry_delay(attempt, response)
                if delay is None:
                    raise from_response(response)
            await self._sleep(delay)
            attempt += 1

    # --- speakers -----------------------------------------------------------------------

    async def create_speaker(self, name: str, audio: AudioInput, *, transcript: str = "",
                             lang: str = "en", filename: str | None = None,
                             idempotency_key: str | None = None) -> models.Speaker:
        """Register a voice from a reference recording (a path, bytes or a binary file)."""
        return await self._run(self._create_speaker(name, audio, transcript, lang, filename,
                                                    idempotency_key))

    async def list_speakers(self, *, limit: int | None = None,
                            cursor: str | None = None) -> models.SpeakerPage:
        return await self._run(self._list_speakers(limit, cursor))

    async def iter_speakers(self, *, page_size: int = 100) -> AsyncIterator[models.Speaker]:
        """Every speaker of the account, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_speakers(limit=page_size, cursor=cursor)
            for speaker in page.items:
                yield speaker
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_speaker(self, speaker_id: str) -> models.Speaker:
        return await self._run(self._get_speaker(speaker_id))

    async def delete_speaker(self, speaker_id: str) -> None:
        await self._run(self._delete_speaker(speaker_id))

    # --- jobs ---------------------------------------------------------------------------

    async def synthesize(self, script: Sequence[Mapping[str, Any]], *,
                         format: str | None = None, sample_rate: int | None = None,
                         captions: Captions = None,
                         output: Mapping[str, Any] | None = None,
                         idempotency_key: str | None = None) -> models.JobAccepted:
        """Submit a script; see `VoiceReel.synthesize`."""
        return await self._run(self._synthesize(script, format, sample_rate, captions, output,
                                                idempotency_key))

    async def get_job(self, job: JobRef) -> models.Job:
        return await self._run(self._get_job(job_id_of(job)))

    async def revise(self, job: JobRef, edits: Sequence[Mapping[str, Any]], *,
                     output: Mapping[str, Any] | None = None,
                     captions: Captions = None,
                     idempotency_key: str | None = None) -> models.RevisionAccepted:
        """Fix lines of a finished job; see `VoiceReel.revise`."""
        return await self._run(self._revise(job_id_of(job), edits, output, captions,
                                            idempotency_key))

    async def retake(self, job: JobRef, line: int, *, seed: int | None = None,
                     idempotency_key: str | None = None) -> models.RevisionAccepted:
        """Render line `line` again, as a new take (with `seed`: that seed's take)."""
        return await self.revise(job, [retake_edit(line, seed)],
                                 idempotency_key=idempotency_key)

    async def revisions(self, job: JobRef) -> list[models.Revision]:
        """Every revision of the job, oldest first; the last is the latest."""
        return (await self._run(self._revisions(job_id_of(job)))).revisions

    async def get_revision(self, job: JobRef, number: int) -> models.Revision:
        return await self._run(self._get_revision(job_id_of(job), number))

    async def delete_job(self, job: JobRef) -> None:
        await self._run(self._delete_job(job_id_of(job)))

    async def wait(self, job: JobRef, *,
                   on_progress: Callable[[models.Job], Any] | None = None,
                   poll_interval: float = 0.5, timeout: float | None = None,
                   raise_on_failure: bool = True) -> models.Job:
        """Poll until the job finishes; see `VoiceReel.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = await self.get_job(job)
            if on_progress is not None:
                outcome = on_progress(current)
                if asyncio.iscoroutine(outcome):
                    await outcome
            if current.finished:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(current, timeout or 0.0)
            await self._sleep(poll_interval)
        if raise_on_failure and current.status != "succeeded":
            raise JobFailed(current)
        return current

    async def download(self, job: JobRef, directory: str | Path, *, captions: bool = True,
                       stems: bool = True) -> models.Downloads:
        """Write a succeeded job's files into `directory`; see `VoiceReel.download`."""
        current = job if isinstance(job, models.Job) else await self.get_job(job)
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        plan = plan_download(current, target, captions, stems)
        try:
            await self._fetch_all(plan)
        except UrlExpired:
            plan = plan_download(await self.get_job(current.id), target, captions, stems)
            await self._fetch_all(plan)
        return plan.result()

    async def _fetch_all(self, plan: DownloadPlan) -> None:
        for _kind, _key, url, path in plan.targets:
            await self._fetch(url, path)

    async def _fetch(self, url: str, path: Path) -> None:
        # Download URLs carry their own signature; the API key must not travel to a file store.
        response = await self._send(lambda: self._http.build_request("GET", self._url(url)),
                                    idempotent=True, stream=True)
        partial = path.with_name(path.name + ".part")
        try:
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
            partial.replace(path)
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
        finally:
            await response.aclose()
            partial.unlink(missing_ok=True)

    # --- account ------------------------------------------------------------------------

    async def usage(self, month: str | None = None) -> models.Usage:
        """Usage of one month (`YYYY-MM`; the current month by default)."""
        return await self._run(self._usage(month))

    # --- keys (owner keys only) ---------------------------------------------------------

    async def create_key(self, role: str, *, name: str = "", expires_at: datetime | None = None,
                   rate_limit_per_minute: int | None = None,
                   max_concurrent_jobs: int | None = None,
                   require_signature: bool = False) -> models.ApiKeyCreated:
        """A new key of this account; its `key` (and `signing_secret`) are shown only here.

        Not retried after a lost answer: a second attempt would make a second key.
        """
        return await self._run(self._create_key(role, name, expires_at,
                                                rate_limit_per_minute, max_concurrent_jobs,
                                                require_signature))

    async def list_keys(self) -> list[models.ApiKey]:
        return (await self._run(self._list_keys())).items

    async def revoke_key(self, key_id: str) -> None:
        """Revoke a key; its next request is refused (`401 key-revoked`)."""
        await self._run(self._revoke_key(key_id))

    async def rotate_key(self, key_id: str, *, grace_seconds: int | None = None
                   ) -> models.ApiKeyCreated:
        """A new secret for the key; the old one works `grace_seconds` more (at most 24 h)."""
        return await self._run(self._rotate_key(key_id, grace_seconds))
