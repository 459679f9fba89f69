"""An in-process app on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from voicereel import operations
from voicereel.api.app import create_app
from voicereel.services import Services, build_services
from voicereel.settings import Settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    max_upload_bytes=4 * 1024 * 1024, sweep_interval_seconds=0.5)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = build_services(settings)
    services.db.migrate()
    yield services
    services.db.dispose()


@pytest.fixture
def client(services: Services, tenant_name: str) -> Iterator[TestClient]:
    key = operations.create_key(services, tenant_name)
    with TestClient(create_app(services.settings, services)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


@pytest.fixture
def other_client(services: Services, client: TestClient, tenant_name: str) -> TestClient:
    key = operations.create_key(services, tenant_name + "-b")
    other = TestClient(client.app)
    other.headers["Authorization"] = f"Bearer {key}"
    return other
