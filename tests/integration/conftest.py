"""A live `voicereel serve` subprocess per database backend, shared by the client-side tests.

The SDK, CLI, OpenAI-compatibility and README tests drive it over HTTP only, as customers do;
each test gets its own tenant, so they share one server without seeing each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.cluster import free_port
from tests.conftest import database_backends, postgres_schema
from tests.serve import voicereel_serve
from voicereel import operations
from voicereel.services import Services, build_services
from voicereel.settings import Settings

_free_port = free_port  # test_cli and test_sdk import it from here


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
    services = build_services(Settings(data_dir=root / "data", database_url=database_url))
    try:
        with voicereel_serve(root, database_url) as serve:
            yield LiveServer(serve.base_url, serve.env, services, serve.log_path)
    finally:
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
