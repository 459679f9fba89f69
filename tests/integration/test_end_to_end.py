"""`voicereel serve` as a subprocess, driven over HTTP only, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

URL_TTL_SECONDS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base_url: str
    data_dir: Path
    env: dict[str, str]

    def create_key(self, tenant: str) -> str:
        out = subprocess.run([sys.executable, "-m", "voicereel", "keys", "create",
                              "--tenant", tenant], env=self.env, check=True,
                             capture_output=True, text=True, timeout=120)
        return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    env = {**os.environ, "VOICEREEL_DATA_DIR": str(tmp_path / "data"),
           "VOICEREEL_DATABASE_URL": database_url,
           "VOICEREEL_URL_TTL_SECONDS": str(URL_TTL_SECONDS)}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "voicereel", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.2)
        yield Server(base, tmp_path / "data", env)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wav(seconds: float, rate: int = 16000, signal: np.ndarray | None = None) -> bytes:
    data = signal if signal is not None else np.zeros(int(seconds * rate), np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_whole_job_over_http(server: Server, reference_wavs: dict[str, bytes],
                             tenant_name: str) -> None:
    key_a = server.create_key(tenant_name)
    key_b = server.create_key(tenant_name + "-other")
    a = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key_a}"},
                     timeout=60)
    b = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key_b}"},
                     timeout=60)
    assert httpx.get(f"{server.base_url}/v1/speakers").status_code == 401

    ids = {}
    for name, wav in reference_wavs.items():
        r = a.post("/v1/speakers", data={"name": name, "transcript": "reading"},
                   files={"audio": (f"{name}.wav", wav, "audio/wav")})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
        assert r.json()["speech_seconds"] >= 30

    # A 20 s clip of real speech and 40 s of silence are refused, each with its reason.
    speech, rate = sf.read(io.BytesIO(reference_wavs["Alice"]), dtype="float32")
    short = a.post("/v1/speakers", data={"name": "Short"},
                   files={"audio": ("x.wav", _wav(20, rate, speech[: 20 * rate]), "audio/wav")})
    assert short.status_code == 422
    assert short.headers["content-type"].startswith("application/problem+json")
    assert short.json()["type"].endswith("/reference-too-short")
    silent = a.post("/v1/speakers", data={"name": "Silent"},
                    files={"audio": ("x.wav", _wav(40), "audio/wav")})
    assert silent.status_code == 422
    assert silent.json()["type"].endswith("/reference-silent")

    script = [
        {"speaker_id": ids["Alice"], "text": "Good morning, and welcome to the studio."},
        {"speaker_id": ids["Bob"], "text": "Thank you. It is great to be here.",
         "pause_after_ms": 500},
        {"speaker_id": ids["Alice"], "text": "Let us start with the first question."},
        {"speaker_id": ids["Bob"], "text": "Sure, go ahead."},
    ]
    r = a.post("/v1/synthesize", json={"script": script,
                                       "output": {"format": "wav", "sample_rate": 24000},
                                       "captions": ["vtt", "srt", "json"]})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.headers["location"] == f"/v1/jobs/{job_id}"

    progress_seen = []
    deadline = time.monotonic() + 300
    while True:
        job = a.get(f"/v1/jobs/{job_id}").json()
        progress_seen.append(job["progress"])
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    assert progress_seen == sorted(progress_seen) and progress_seen[-1] == 1.0
    assert job["started_at"] and job["finished_at"]

    result = job["result"]
    audio = httpx.get(result["audio"]["url"])
    assert audio.status_code == 200
    captions = {fmt: httpx.get(link["url"]) for fmt, link in result["captions"].items()}
    assert {fmt: c.status_code for fmt, c in captions.items()} == {
        "vtt": 200, "srt": 200, "json": 200, "report": 200}

    data, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == 24000
    caption_json = json.loads(captions["json"].content)
    assert abs(len(data) / rate - caption_json["duration"]) < 0.001
    segments = caption_json["segments"]
    assert [s["speaker"] for s in segments] == ["Alice", "Bob", "Alice", "Bob"]
    assert caption_json["speakers"] == {ids["Alice"]: "Alice", ids["Bob"]: "Bob"}
    for seg, line in zip(segments, script, strict=True):
        assert seg["text"] == line["text"]
        assert [w["text"] for w in seg["words"]] == line["text"].split()
        for word in seg["words"]:
            assert seg["start"] <= word["start"] <= word["end"] <= seg["end"]
        # The segment really holds sound, and the gap before the next one is quiet.
        inside = data[round(seg["start"] * rate):round(seg["end"] * rate)]
        assert np.sqrt(np.mean(inside**2)) > 0.01
    gap = data[round(segments[1]["end"] * rate) + 50:round(segments[2]["start"] * rate) - 50]
    assert len(gap) >= 0.45 * rate and np.abs(gap).max() < 1e-3
    vtt = captions["vtt"].text
    # two quick turns share a cue, a line each (netflix-en)
    assert vtt.startswith("WEBVTT") and "<v Alice>- Good morning" in vtt
    assert "\n- Bob: Thank you." in captions["srt"].text

    # Another tenant sees none of it.
    assert b.get(f"/v1/speakers/{ids['Alice']}").status_code == 404
    assert b.get(f"/v1/jobs/{job_id}").status_code == 404
    assert b.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert b.get("/v1/speakers").json()["items"] == []

    # A tampered URL is refused; the URL expires after the TTL.
    url = result["audio"]["url"]
    tampered = url.replace("sig=", "sig=0")
    assert httpx.get(tampered).status_code == 403
    other_file = url.replace("audio.wav", "captions.json")
    assert httpx.get(other_file).status_code == 403
    time.sleep(URL_TTL_SECONDS + 1)
    expired = httpx.get(url)
    assert expired.status_code == 403 and expired.json()["type"].endswith("/url-expired")

    # DELETE removes every stored file of the job.
    fresh = a.get(f"/v1/jobs/{job_id}").json()["result"]["audio"]["url"]
    job_dir = next(server.data_dir.glob(f"files/*/jobs/{job_id}"))
    assert sorted(p.name for p in job_dir.iterdir()) == [
        "audio.wav", "captions-report.json", "captions.json", "captions.srt", "captions.vtt",
        "units"]
    assert a.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not job_dir.exists()
    assert httpx.get(fresh).status_code == 404
    assert a.get(f"/v1/jobs/{job_id}").status_code == 404
