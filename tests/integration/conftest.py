"""A live `voicereel serve` subprocess per database backend, shared by the client-side tests.

The SDK, CLI, OpenAI-compatibility and README tests drive it over HTTP only, as customers do;
each test gets its own tenant, so they share one server without seeing each other's data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import database_backends, postgres_schema
from voicereel import operations
from voicereel.services import Services, build_services
from voicereel.settings import Settings

READY_TIMEOUT_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    env: dict[str, str]
    services: Services  # on the server's database, for making keys only
    log_path: Path

    def create_key(self, tenant: str | None = None) -> str:
        """A key of a new tenant (or of `tenant`)."""
        return operations.create_key(self.services, tenant or f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session", params=database_backends())
def live_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"live-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            database_url = stack.enter_context(
                postgres_schema(str(request.getfixturevalue("postgres_url"))))
        else:
            database_url = f"sqlite:///{root / 'voicereel.db'}"
        yield from _serve(root, database_url)


def _serve(root: Path, database_url: str) -> Iterator[LiveServer]:
    data_dir = root / "data"
    env = {**os.environ, "VOICEREEL_DATA_DIR": str(data_dir),
           "VOICEREEL_DATABASE_URL": database_url}
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    port = _free_port()
    log_path = root / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "voicereel", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server never became ready:\n" \
                                                f"{log_path.read_text()}"
            time.sleep(0.2)
        yield LiveServer(base, env, services, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        services.db.dispose()


@pytest.fixture(scope="session")
def reference_files(reference_wavs: dict[str, bytes],
                    tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two reference recordings as files: {"Alice": .../alice.wav, "Bob": .../bob.wav}."""
    folder = tmp_path_factory.mktemp("references")
    paths = {}
    for name, data in reference_wavs.items():
        path = folder / f"{name.lower()}.wav"
        path.write_bytes(data)
        paths[name] = path
    return paths
