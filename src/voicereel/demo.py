"""`voicereel demo`: the whole product on this machine, with nothing running beforehand.

It starts the API in-process on a free loopback port with a fresh data dir, makes two
reference recordings of its own, and drives the API over HTTP like any customer would.
"""

from __future__ import annotations

import io
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np
import soundfile as sf

READING = (
    "The old lighthouse stood at the edge of the cliff for more than a century. "
    "Every night its keeper climbed the narrow stairs and lit the great lamp. "
    "Ships far out at sea looked for its steady beam and turned away from the rocks. "
    "In winter the wind howled around the tower and the waves struck the stones below. "
    "In summer the keeper painted the rails and watched the gulls above the water. "
    "Nobody remembers his name, but the sailors who came home safely never forgot the light. "
    "Today the lamp is automatic, and visitors walk up the stairs to look at the view. "
    "They read the old logbooks and wonder what those long nights were like."
)

DIALOGUE = [
    ("Alice", "Welcome back to the show. Today we are talking about lighthouses."),
    ("Bob", "Thanks for having me. I have loved them since I was a child."),
    ("Alice", "What is it about them that caught your attention?"),
    ("Bob", "The idea that one steady light could keep so many people safe."),
]

# `voicereel demo --lang ko`: the same two voices, registered as Korean speakers, in a Korean
# dialogue whose numbers the Korean normaliser reads (3시 -> 세 시, 15,000원 -> 만 오천 원).
KOREAN_NAMES = {"Alice": "민지", "Bob": "준호"}
KOREAN_DIALOGUE = [
    ("Alice", "안녕하세요. 오늘 회의는 3시 30분에 시작합니다."),
    ("Bob", "네, 알겠습니다. 회의실은 3층에 있나요?"),
    ("Alice", "맞아요. 자료는 2부씩 준비해 주세요. 가격표는 15,000원입니다."),
    ("Bob", "좋습니다. 그럼 이따가 뵙겠습니다!"),
]
DEMO_LANGUAGES = ("en", "ko")

# (pitch factor, tempo factor) of each demo voice against the bundled base voice.
VOICES = {"Alice": (1.35, 0.95), "Bob": (0.8, 1.05)}


# Every demo reference reads READING this many times, so its transcript is known exactly.
REFERENCE_READINGS = 2
REFERENCE_TRANSCRIPT = " ".join([READING] * REFERENCE_READINGS)


def make_reference(pitch: float, tempo: float) -> bytes:
    """A WAV of the bundled voice, moved in pitch and tempo, reading REFERENCE_TRANSCRIPT."""
    from voicereel.audio.io import resample
    from voicereel.engines.piper import PiperEngine
    from voicereel.settings import Settings

    engine = PiperEngine(Settings())
    rate = engine.sample_rate
    pause = np.zeros(int(0.4 * rate), np.float32)
    pieces: list[np.ndarray] = []
    for _ in range(REFERENCE_READINGS):
        audio, _ = engine.render_base(READING, length_scale=tempo * pitch)
        pieces += [resample(audio, rate, round(rate / pitch)), pause]
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(pieces), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def register_voices(client: httpx.Client) -> dict[str, str]:
    """Register the demo's voices (`VOICES`) on a service; their ids by name."""
    ids = {}
    for name, (pitch, tempo) in VOICES.items():
        r = client.post("/v1/speakers", data={"name": name},
                        files={"audio": ("r.wav", make_reference(pitch, tempo), "audio/wav")})
        r.raise_for_status()
        ids[name] = str(r.json()["id"])
    return ids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_service(tenant: str = "demo", **settings_overrides: Any) -> Iterator[httpx.Client]:
    """A fresh service on a free loopback port, and a client holding a key of `tenant`."""
    import uvicorn

    from voicereel import operations
    from voicereel.api.app import create_app
    from voicereel.services import build_services
    from voicereel.settings import Settings

    with tempfile.TemporaryDirectory(prefix="voicereel-demo-") as data_dir:
        settings = Settings(**{"data_dir": Path(data_dir), "database_url": "",
                               "env": "development", **settings_overrides})
        services = build_services(settings)
        services.db.migrate()
        key = operations.create_key(services, tenant)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, services), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                _wait_ready(client)
                yield client
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def run_demo(out_dir: str, echo: Callable[[str], None] = print, lang: str = "en") -> list[Path]:
    """Render the demo dialogue in `lang` (one of DEMO_LANGUAGES) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with local_service() as client:
        return _drive(client, out, echo, lang)


def _wait_ready(client: httpx.Client) -> None:
    for _ in range(600):
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise click.ClickException("the demo server did not become ready")


def _drive(client: httpx.Client, out: Path, echo: Callable[[str], None],
           lang: str = "en") -> list[Path]:
    korean = lang == "ko"
    speaker_ids: dict[str, str] = {}
    for name, (pitch, tempo) in VOICES.items():
        echo(f"Recording and registering the reference voice of {name}...")
        wav = make_reference(pitch, tempo)
        response = client.post("/v1/speakers",
                               data={"name": KOREAN_NAMES[name] if korean else name,
                                     "transcript": REFERENCE_TRANSCRIPT, "lang": lang},
                               files={"audio": (f"{name}.wav", wav, "audio/wav")})
        _expect(response, 201)
        speaker_ids[name] = response.json()["id"]
    script = [{"speaker_id": speaker_ids[name], "text": text}
              for name, text in (KOREAN_DIALOGUE if korean else DIALOGUE)]
    captions: Any = (["vtt", "srt", "json"] if not korean
                     else {"formats": ["vtt", "srt", "json"], "style": "korean"})
    response = client.post("/v1/synthesize", json={
        "script": script, "output": {"format": "wav", "sample_rate": 24000},
        "captions": captions})
    _expect(response, 202)
    job_url = response.headers["location"]
    with click.progressbar(length=100, label="Rendering the dialogue") as bar:
        done = 0
        while True:
            job = client.get(job_url).json()
            now = int(job["progress"] * 100)
            bar.update(now - done)
            done = now
            if job["status"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.2)
    if job["status"] != "succeeded":
        raise click.ClickException(f"the demo job {job['status']}: {job['error']}")
    result = job["result"]
    downloads = {"demo.wav": result["audio"]["url"]}
    downloads.update({"demo-report.json" if fmt == "report" else f"demo.{fmt}": link["url"]
                      for fmt, link in result["captions"].items()})
    paths = []
    for filename, url in downloads.items():
        response = client.get(url)
        _expect(response, 200)
        path = out / filename
        path.write_bytes(response.content)
        paths.append(path.resolve())
    captions = json.loads((out / "demo.json").read_text())
    echo(f"Rendered {captions['duration']:.2f} s with {len(captions['segments'])} segments:")
    return paths


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise click.ClickException(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text}")
