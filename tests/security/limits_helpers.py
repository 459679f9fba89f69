"""A real `voicereel serve` subprocess on loopback for the limits and concurrency tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from voicereel.db import repo
from voicereel.db.tables import Speaker
from voicereel.services import Services, build_services
from voicereel.settings import Settings

READY_TIMEOUT_SECONDS = 180


@dataclass
class Server:
    base_url: str
    proc: subprocess.Popen[bytes]
    services: Services  # on the server's database: keys, speaker rows, inspection
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def voicereel_serve(root: Path, database_url: str, **settings: str) -> Iterator[Server]:
    """`voicereel serve` with `VOICEREEL_<NAME>` set from `settings`; stopped (or killed)
    on exit. Several may run one after another on the same data dir and database."""
    data_dir = root / "data"
    env = {**os.environ, "VOICEREEL_DATA_DIR": str(data_dir),
           "VOICEREEL_DATABASE_URL": database_url,
           **{f"VOICEREEL_{name.upper()}": value for name, value in settings.items()}}
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    port = _free_port()
    log_path = root / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "voicereel", "serve", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", proc, services, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            assert proc.poll() is None, server.log()
            try:
                if httpx.get(f"{server.base_url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server never became ready:\n{server.log()}"
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        services.db.dispose()


def add_speaker_row(services: Services, tenant_id: str) -> str:
    """A speaker without a stored reference: piper renders it with its fixed fallback profile."""
    speaker_id = repo.new_id("spk")
    with services.db.session() as session:
        repo.add_speaker(session, Speaker(
            id=speaker_id, tenant_id=tenant_id, name="Row", lang="en", transcript="",
            reference_key=f"tenants/{tenant_id}/speakers/{speaker_id}/reference.wav",
            reference_format="wav", reference_seconds=35.0, speech_seconds=33.0,
            engine="piper", profile={}))
    return speaker_id


def tenant_of(services: Services, key: str) -> tuple[str, str]:
    """(api key id, tenant id) of a plaintext key."""
    with services.db.session() as session:
        found = repo.key_and_tenant(session, key)
    assert found is not None
    return found[0].id, found[1].id
