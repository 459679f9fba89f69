"""A hostile upload corpus, made here: every item is answered with a 4xx problem, no temporary
file is left behind, and the client's file name is never used for storage."""

from __future__ import annotations

import io
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi.testclient import TestClient

from tests.api.trust_helpers import PROBLEM, problem
from voicereel.api.app import create_app
from voicereel.services import Services

RATE = 16_000


def _wav(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def _header(data_bytes: int, rate: int) -> bytes:
    """A 16-bit mono PCM WAV header declaring `data_bytes` of samples at `rate`."""
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


def corpus() -> dict[str, tuple[bytes, int, str | None]]:
    """name -> (file bytes, expected status, expected problem slug)."""
    rng = np.random.default_rng(7)
    seconds = np.arange(40 * RATE) / RATE
    flac = io.BytesIO()
    sf.write(flac, np.zeros(20 * 60 * 8000, np.float32), 8000, format="FLAC", subtype="PCM_16")
    return {
        "empty": (b"", 422, "audio-unreadable"),
        "truncated-wav-claiming-40s": (_header(40 * RATE * 2, RATE)
                                       + rng.integers(-3000, 3000, RATE, np.int16).tobytes(),
                                       422, None),
        "sample-rate-0": (_header(RATE * 2, 0) + bytes(RATE * 2), 422, None),
        "random-bytes": (rng.bytes(64 * 1024), 415, "unsupported-media-type"),
        "text-renamed-mp3": (b"Hello, this is not audio at all.\n" * 100, 415,
                             "unsupported-media-type"),
        "silence-40s": (_wav(np.zeros(40 * RATE)), 422, "reference-silent"),
        "noise-40s": (_wav(rng.normal(0, 0.2, 40 * RATE)), 422, "reference-noise"),
        "tone-40s": (_wav(0.5 * np.sin(2 * np.pi * 440 * seconds)), 422, "reference-tone"),
        "twenty-minutes": (flac.getvalue(), 422, "reference-too-long"),
    }


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the web framework spools uploads during these tests."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    return spool


def _open_files_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def test_corpus_is_refused_with_problems_and_leaves_no_temp_files(
        client: TestClient, temp_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = {}
    for name, (data, status, slug) in corpus().items():
        response = client.post("/v1/speakers", data={"name": name},
                               files={"audio": (f"{name}.mp3", data, "audio/mpeg")})
        body = problem(response, status, slug)
        results[name] = f"{response.status_code} {body['type'].rsplit('/', 1)[-1]}"
    assert list(temp_dir.iterdir()) == []
    assert _open_files_under(temp_dir) == []
    with capsys.disabled():
        print("\nhostile upload corpus:", results)


def test_decoding_has_a_time_limit(client: TestClient, services: Services,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.settings, "decode_timeout_seconds", 1e-6)
    noise = _wav(np.random.default_rng(1).normal(0, 0.2, 40 * RATE))
    problem(client.post("/v1/speakers", data={"name": "slow"},
                        files={"audio": ("n.wav", noise, "audio/wav")}), 422, "decode-timeout")


def test_declared_oversize_body_is_413(client: TestClient, services: Services,
                                       temp_dir: Path) -> None:
    big = bytes(services.settings.max_upload_bytes + 2 * 1024 * 1024)
    problem(client.post("/v1/speakers", data={"name": "big"},
                        files={"audio": ("big.wav", big, "audio/wav")}), 413, "payload-too-large")
    assert list(temp_dir.iterdir()) == [] and _open_files_under(temp_dir) == []


@pytest.fixture
def served(services: Services, client: TestClient) -> Iterator[tuple[int, str]]:
    """The app on a real loopback socket, for bodies streamed without a Content-Length."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(services.settings, services),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started
    yield sock.getsockname()[1], client.headers["Authorization"]
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_chunked_oversize_body_is_refused_before_it_is_all_sent(
        served: tuple[int, str], services: Services, temp_dir: Path) -> None:
    port, authorization = served
    limit = services.settings.max_upload_bytes + 1024 * 1024
    boundary = "hostile"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; "
            f"filename=\"big.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    chunk = b"\0" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall((f"POST /v1/speakers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: {authorization}\r\nTransfer-Encoding: chunked\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
        for piece in [head] + [chunk] * (limit // len(chunk) + 4):
            try:
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except OSError:  # the server answered and closed: it read no further
                break
            sent += len(piece)
        # the body never ends (no last chunk): only an early answer can arrive
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert PROBLEM.encode() in answer
    assert sent <= limit + 5 * len(chunk)
    assert list(temp_dir.iterdir()) == []


def test_client_file_names_are_never_used_for_storage(
        client: TestClient, services: Services, reference_wavs: dict[str, bytes]) -> None:
    hostile = "../../../etc/passwd;rm -rf.wav"
    response = client.post("/v1/speakers", data={"name": "Alice"},
                           files={"audio": (hostile, next(iter(reference_wavs.values())),
                                            "audio/wav")})
    assert response.status_code == 201, response.text
    stored: list[Any] = [p for p in services.settings.data_dir.rglob("*") if p.is_file()]
    names = {p.name for p in stored}
    assert "reference.wav" in names
    assert not any("passwd" in str(p) or "rm -rf" in str(p) for p in stored)
