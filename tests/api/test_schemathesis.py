"""Property-based API testing with schemathesis against the served /openapi.json: every
operation, authenticated; no 5xx and every response conforms to the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from voicereel import operations
from voicereel.api.app import create_app
from voicereel.services import Services, build_services
from voicereel.settings import Settings

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def app_and_key(tmp_path: Any, tenant_name: str) -> Iterator[tuple[Any, str]]:
    """One SQLite-backed app; the fuzzer's volume would only repeat itself on PostgreSQL."""
    services: Services = build_services(Settings(
        data_dir=tmp_path / "data", max_upload_bytes=1024 * 1024, rate_limit_per_minute=0,
        max_concurrent_jobs=0, sweep_interval_seconds=0.5))
    services.db.migrate()
    key = operations.create_key(services, tenant_name)
    app = create_app(services.settings, services)
    with TestClient(app):  # runs the lifespan: the runner and engine start
        yield app, key
    services.db.dispose()


def test_every_operation_conforms(app_and_key: tuple[Any, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    app, key = app_and_key
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {key}"}
    counts: dict[str, int] = {}
    failures: list[str] = []
    operations_seen = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations_seen += 1
        counts[operation.label] = 0

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            counts[case.operation.label] += 1
            headers = {**(case.headers or {}), **auth}
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            run()
        except Exception as exc:  # one operation's failure should not hide the others'
            failures.append(f"{operation.label}: {exc}"[:2000])
    total = sum(counts.values())
    with capsys.disabled():
        print(f"\nschemathesis: {operations_seen} operations, {total} cases")
    assert operations_seen >= 8
    assert not failures, "\n\n".join(failures)
