"""The SDK's error mapping, retries and waiting, through its injectable transport.

Problem documents are rendered by the server's own `api/problems.py`, so the client is checked
against what the service really sends.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from voicereel import errors as server_errors
from voicereel.api.problems import problem_response
from voicereel.client import (
    AsyncVoiceReel,
    ConnectionFailed,
    JobFailed,
    RateLimited,
    ReferenceRejected,
    ServerError,
    ServiceUnavailable,
    ValidationFailed,
    VoiceReel,
)
from voicereel.client import errors as client_errors
from voicereel.client.signing import RequestSigner

BASE = "http://voicereel.test"
JOB = {"id": "job_1", "status": "running", "progress": 0.5, "units_done": 1, "units_total": 2,
       "created_at": "2025-01-01T00:00:00+00:00", "attempts": 1}


def _all_subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in [direct, *_all_subclasses(direct)]]


SERVER_CLASSES = [cls for cls in _all_subclasses(server_errors.VoiceReelError)
                  if cls is not server_errors.SynthesisFailed]
REFERENCE_PROBLEMS = (server_errors.NotEnoughSpeech, server_errors.ReferenceTooLong)


def _client_class_for(server_cls: type) -> type:
    """The same-named client class of the nearest server ancestor the client knows."""
    if issubclass(server_cls, REFERENCE_PROBLEMS):
        return ReferenceRejected
    for ancestor in server_cls.__mro__:
        known = getattr(client_errors, ancestor.__name__, None)
        if isinstance(known, type) and issubclass(known, client_errors.APIError):
            return known
    return client_errors.APIError


def _problem(exc: server_errors.VoiceReelError) -> httpx.Response:
    rendered = problem_response(exc, "/v1/anything")
    return httpx.Response(rendered.status_code, headers=dict(rendered.headers),
                          content=bytes(rendered.body))


def _client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any
            ) -> tuple[VoiceReel, list[float]]:
    client = VoiceReel(BASE, "vr_test", transport=httpx.MockTransport(handler), **kw)
    slept: list[float] = []
    client._sleep = slept.append
    return client, slept


@pytest.mark.parametrize("server_cls", SERVER_CLASSES, ids=lambda c: c.__name__)
def test_every_server_problem_maps_to_its_client_class(server_cls: type) -> None:
    exc = server_cls("what went wrong")
    client, _ = _client(lambda request: _problem(exc), max_retries=0)
    with pytest.raises(client_errors.APIError) as caught:
        client.get_speaker("spk_1")
    raised = caught.value
    assert type(raised) is _client_class_for(server_cls)
    assert (raised.status, raised.slug, raised.detail) == (exc.status, exc.slug,
                                                           "what went wrong")
    assert raised.instance == "/v1/anything"


def test_field_errors_are_kept_and_shown() -> None:
    exc = server_errors.ValidationFailed("the script exceeds the service limits", errors=[
        {"loc": ["body", "script", 3, "text"], "msg": "at most 2000 characters per line"}])
    client, _ = _client(lambda request: _problem(exc))
    with pytest.raises(ValidationFailed) as caught:
        client.synthesize([{"speaker_id": "spk_1", "text": "Hi."}])
    assert caught.value.errors == [{"loc": ["body", "script", 3, "text"],
                                    "msg": "at most 2000 characters per line"}]
    assert "script.3.text: at most 2000 characters per line" in str(caught.value)


def test_an_error_that_is_not_a_problem_document_still_maps_by_status() -> None:
    client, _ = _client(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ServerError) as caught:
        client.get_job("job_1")
    assert caught.value.status == 502 and "Bad gateway" in caught.value.detail


def test_429_waits_as_long_as_retry_after_says_then_succeeds() -> None:
    answers = [_problem(server_errors.RateLimited("slow down", headers={"Retry-After": "3"})),
               httpx.Response(200, json=JOB)]
    client, slept = _client(lambda request: answers.pop(0))
    assert client.get_job("job_1").progress == 0.5
    assert slept == [3.0]


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    answers = [httpx.Response(503, headers={"Retry-After": when}), httpx.Response(200, json=JOB)]
    client, slept = _client(lambda request: answers.pop(0))
    client.get_job("job_1")
    assert len(slept) == 1 and 25 <= slept[0] <= 30


def test_503_without_retry_after_backs_off_exponentially_then_gives_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return _problem(server_errors.ServiceUnavailable("warming up"))

    client, slept = _client(handler, max_retries=3, backoff=1.0)
    with pytest.raises(ServiceUnavailable):
        client.list_speakers()
    assert len(calls) == 4
    # Each delay is the base doubled per attempt, with jitter between half and all of it.
    for attempt, delay in enumerate(slept):
        assert 0.5 * 2**attempt <= delay <= 2**attempt


def test_a_retry_after_longer_than_the_caller_accepts_is_raised_at_once() -> None:
    exc = server_errors.RateLimited("monthly quota used", headers={"Retry-After": "86400"})
    client, slept = _client(lambda request: _problem(exc), max_retry_wait=60)
    with pytest.raises(RateLimited) as caught:
        client.list_speakers()
    assert caught.value.retry_after == 86400 and slept == []


def test_a_post_is_resent_with_the_same_idempotency_key() -> None:
    failures: list[Exception] = [httpx.ConnectError("refused"), httpx.ReadError("reset")]
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        if failures:
            raise failures.pop(0)
        return httpx.Response(202, json={"job_id": "job_1", "status": "queued"})

    client, slept = _client(handler)
    assert client.synthesize([{"speaker_id": "spk_1", "text": "Hi."}]).job_id == "job_1"
    assert len(slept) == 2 and len(set(keys)) == 1 and keys[0]
    client.synthesize([{"speaker_id": "spk_1", "text": "Hi."}], idempotency_key="order-42")
    assert keys[-1] == "order-42"


def test_connection_failures_end_in_connection_failed_after_the_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, slept = _client(handler, max_retries=2)
    with pytest.raises(ConnectionFailed, match="cannot reach VoiceReel at http://voicereel.test"):
        client.list_speakers()
    assert len(slept) == 2


def test_a_get_is_resent_after_a_broken_connection() -> None:
    failures: list[Exception] = [httpx.ReadError("reset"), httpx.RemoteProtocolError("eof")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=JOB)

    client, slept = _client(handler)
    assert client.get_job("job_1").id == "job_1"
    assert len(slept) == 2


def test_the_key_goes_to_the_api_but_never_to_download_urls(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}
    done = {**JOB, "status": "succeeded", "progress": 1.0, "result": {
        "duration": 1.0, "expires_at": "2025-01-01T00:15:00+00:00",
        "audio": {"url": "https://files.test/t/jobs/job_1/audio.mp3?sig=x",
                  "content_type": "audio/mpeg", "size_bytes": 3},
        "captions": {"vtt": {"url": "https://files.test/t/jobs/job_1/captions.vtt?sig=y",
                             "content_type": "text/vtt", "size_bytes": 6}}}}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.headers.get("authorization")
        if request.url.host == "files.test":
            return httpx.Response(200, content=b"ID3" if "audio" in request.url.path
                                  else b"WEBVTT")
        return httpx.Response(200, json=done)

    client, _ = _client(handler)
    files = client.download("job_1", tmp_path / "out")
    assert seen == {"/v1/jobs/job_1": "Bearer vr_test", "/t/jobs/job_1/audio.mp3": None,
                    "/t/jobs/job_1/captions.vtt": None}
    assert files.audio == tmp_path / "out" / "job_1-audio.mp3"
    assert files.audio.read_bytes() == b"ID3"
    assert files.captions["vtt"].read_text() == "WEBVTT"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "job_1-audio.mp3", "job_1-captions.vtt"]


def test_wait_reports_progress_and_raises_when_the_job_fails() -> None:
    states = [{**JOB, "status": "queued", "progress": 0.0}, JOB,
              {**JOB, "status": "failed", "error": "speaker(s) spk_1 were deleted"}]
    client, slept = _client(lambda request: httpx.Response(200, json=states.pop(0)))
    seen: list[float] = []
    with pytest.raises(JobFailed, match="job_1 failed: speaker") as caught:
        client.wait("job_1", on_progress=lambda job: seen.append(job.progress),
                    poll_interval=0.25)
    assert caught.value.job.status == "failed"
    assert seen == [0.0, 0.5, 0.5] and slept == [0.25, 0.25]


def test_wait_gives_up_after_its_timeout() -> None:
    client, _ = _client(lambda request: httpx.Response(200, json=JOB))
    with pytest.raises(client_errors.WaitTimeout, match="still running"):
        client.wait("job_1", timeout=0)


def test_the_async_client_maps_and_retries_the_same_way() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "1"}),
               _problem(server_errors.NotFound("job job_9 not found"))]

    async def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async def scenario() -> list[float]:
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        async with AsyncVoiceReel(BASE, "vr_test",
                                  transport=httpx.MockTransport(handler)) as client:
            client._sleep = sleep
            with pytest.raises(client_errors.NotFound, match="job job_9 not found"):
                await client.get_job("job_9")
        return slept

    assert asyncio.run(scenario()) == [1.0]


def test_a_missing_key_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEREEL_API_KEY", raising=False)
    with pytest.raises(ValueError, match="VOICEREEL_API_KEY"):
        VoiceReel(BASE)



def test_signatures_match_the_servers_scheme() -> None:
    from voicereel.auth import signing as server_signing

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"items": [], "next_cursor": None})
        return httpx.Response(202, json={"job_id": "job_1", "status": "queued"})

    client, _ = _client(handler, signing_secret="vrs_example-secret")
    client.synthesize([{"speaker_id": "spk_1", "text": "Hi."}])
    client.list_speakers(limit=2)
    for request in seen:
        timestamp = request.headers["voicereel-timestamp"]
        expected = server_signing.sign("vrs_example-secret", timestamp, request.method,
                                       request.url.raw_path.decode(), request.content)
        assert request.headers["voicereel-signature"] == expected
    assert seen[1].url.raw_path == b"/v1/speakers?limit=2"


def test_a_replayed_signature_is_signed_again_a_second_later() -> None:
    timestamps: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timestamps.append(request.headers["voicereel-timestamp"])
        if len(timestamps) == 1:
            return _problem(server_errors.SignatureReplayed("already used"))
        return httpx.Response(200, json=JOB)

    client, slept = _client(handler, signing_secret="vrs_secret")

    def sleep_for_real(seconds: float) -> None:  # the next timestamp must really be later
        slept.append(seconds)
        time.sleep(seconds)

    client._sleep = sleep_for_real
    assert client.get_job("job_1").id == "job_1"
    assert len(slept) == 1 and 0 < slept[0] <= 1.01
    assert int(timestamps[1]) > int(timestamps[0])


def test_the_worked_example_of_docs_security_md() -> None:
    signer = RequestSigner("vrs_example-secret-do-not-use")
    body = b'{"script":[{"speaker_id":"spk_0123456789abcdef0123","text":"Hello there."}]}'
    post = httpx.Request("POST", f"{BASE}/v1/synthesize", content=body)
    get = httpx.Request("GET", f"{BASE}/v1/speakers", params={"limit": 2})
    for request in (post, get):
        signer.sign(request, now=1735689600)
    assert post.headers["VoiceReel-Signature"] == (
        "v1=1a72da674997ec725b4141907787b8f3fa95137c4eaf37fd02550c211957b168")
    assert get.headers["VoiceReel-Signature"] == (
        "v1=71c139aa8ee3443b610e3a64d6741a6832181257e81a066d8076c388ddbda22e")
    assert get.headers["VoiceReel-Timestamp"] == "1735689600"
