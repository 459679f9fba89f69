"""Chaos tests run on PostgreSQL when it is configured (the production target), else SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL


@pytest.fixture
def chaos_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if POSTGRES_URL:
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'voicereel.db'}"
