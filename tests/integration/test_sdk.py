"""The Python SDK against a live `voicereel serve`: register, synthesize, wait, download."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.integration.conftest import LiveServer, _free_port
from voicereel import operations
from voicereel.client import (
    AsyncVoiceReel,
    ConnectionFailed,
    Job,
    NotFound,
    ReferenceRejected,
    SignatureInvalid,
    Unauthorized,
    ValidationFailed,
    VoiceReel,
)


def test_register_synthesize_wait_download(live_server: LiveServer,
                                           reference_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    with VoiceReel(live_server.base_url, live_server.create_key()) as client:
        alice = client.create_speaker("Alice", reference_files["Alice"],
                                      transcript="The old lighthouse stood at the edge.")
        bob = client.create_speaker("Bob", reference_files["Bob"].read_bytes())
        assert alice.speech_seconds >= 30 and alice.name == "Alice"
        assert [s.id for s in client.iter_speakers(page_size=1)] == [bob.id, alice.id]

        accepted = client.synthesize([
            {"speaker_id": alice.id, "text": "Good morning, and welcome."},
            {"speaker_id": bob.id, "text": "Thank you. [pause:300ms] Glad to be here."},
        ], format="flac", sample_rate=22050, captions=["json", "vtt"])
        assert accepted.status == "queued"

        seen: list[Job] = []
        done = client.wait(accepted, on_progress=seen.append, poll_interval=0.2)
        assert done.status == "succeeded" and done.result is not None
        progress = [job.progress for job in seen]
        assert progress == sorted(progress) and progress[-1] == 1.0

        files = client.download(done, tmp_path / "out")
        assert files.audio == tmp_path / "out" / f"{done.id}-audio.flac"
        assert set(files.captions) == {"json", "vtt"}
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
            p.name for p in files.paths())

        audio, rate = sf.read(files.audio, dtype="float32")
        captions = json.loads(files.captions["json"].read_text())
        assert rate == 22050
        assert abs(len(audio) / rate - captions["duration"]) < 0.001
        assert [s["speaker"] for s in captions["segments"]] == ["Alice", "Bob"]
        assert float(np.sqrt(np.mean(audio**2))) > 0.01
        assert files.captions["vtt"].read_text().startswith("WEBVTT")

        client.delete_job(done)
        with pytest.raises(NotFound):
            client.get_job(done.id)
        client.delete_speaker(bob.id)
        assert [s.name for s in client.iter_speakers()] == ["Alice"]


def test_problems_from_the_server_arrive_as_typed_errors(live_server: LiveServer,
                                                         reference_wavs: dict[str, bytes]
                                                         ) -> None:
    with VoiceReel(live_server.base_url, "vr_not-a-real-key", max_retries=0) as stranger, \
            pytest.raises(Unauthorized, match="not valid"):
        stranger.list_speakers()

    with VoiceReel(live_server.base_url, live_server.create_key()) as client:
        with pytest.raises(NotFound):
            client.get_job("job_doesnotexist")

        with pytest.raises(ValidationFailed) as caught:
            client.synthesize([{"speaker_id": "spk_nobody", "text": "Hello."}])
        assert caught.value.errors[0]["loc"] == ["body", "script", 0, "speaker_id"]

        speech, rate = sf.read(io.BytesIO(reference_wavs["Alice"]), dtype="float32")
        short = io.BytesIO()
        sf.write(short, speech[: 10 * rate], rate, format="WAV")
        with pytest.raises(ReferenceRejected) as rejected:
            client.create_speaker("Short", short.getvalue())
        assert rejected.value.slug == "reference-too-short"


def test_the_async_client_against_the_live_server(live_server: LiveServer) -> None:
    async def scenario() -> None:
        async with AsyncVoiceReel(live_server.base_url, live_server.create_key()) as client:
            page = await client.list_speakers()
            assert page.items == [] and page.next_cursor is None
            with pytest.raises(NotFound):
                await client.get_speaker("spk_missing")

    asyncio.run(scenario())


def test_a_key_that_requires_signed_requests(live_server: LiveServer) -> None:
    key, secret = operations.create_key_with_options(
        live_server.services, f"signed-{uuid.uuid4().hex[:8]}", require_signature=True)
    assert secret
    with VoiceReel(live_server.base_url, key, max_retries=0) as unsigned, \
            pytest.raises(SignatureInvalid) as caught:
        unsigned.list_speakers()
    assert caught.value.slug == "signature-missing"
    with VoiceReel(live_server.base_url, key, signing_secret=secret) as client:
        # Identical requests within one second repeat a signature; the client signs anew.
        pages = [client.list_speakers(limit=5) for _ in range(3)]
        assert all(page.items == [] for page in pages)
        with pytest.raises(NotFound):
            client.get_job("job_unknown")


def test_an_unreachable_server_is_a_connection_failure() -> None:
    with VoiceReel(f"http://127.0.0.1:{_free_port()}", "vr_key", max_retries=1,
                   backoff=0.01) as client, pytest.raises(ConnectionFailed):
        client.list_speakers()
