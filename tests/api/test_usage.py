"""Usage metering: succeeded jobs per month, per UTC day and engine, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.api.trust_helpers import add_job_row, caller, problem
from voicereel import operations
from voicereel.services import Services


def _at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, 30, tzinfo=UTC)


def test_month_totals_and_days(client: TestClient, other_client: TestClient,
                               services: Services) -> None:
    _, tenant = caller(services, client.headers["Authorization"].split()[1])
    _, other = caller(services, other_client.headers["Authorization"].split()[1])
    for finished, chars, secs, engine in [
            (_at(1, 0), 100, 7.5, "piper"), (_at(1, 23), 20, 2.0, "piper"),
            (_at(1, 9), 50, 4.25, "fish-speech"), (_at(31, 23), 10, 1.0, "piper"),
            (_at(1, 0, month=4), 999, 99.0, "piper"), (_at(28, month=2), 999, 99.0, "piper")]:
        add_job_row(services, tenant.id, status="succeeded", finished_at=finished,
                    characters=chars, audio_seconds=secs, engine=engine)
    add_job_row(services, tenant.id, status="failed", finished_at=_at(2), characters=500,
                engine="piper")
    add_job_row(services, other.id, status="succeeded", finished_at=_at(2), characters=700,
                audio_seconds=70.0, engine="piper")
    # a deleted job that was rendered still counts
    deleted = add_job_row(services, tenant.id, status="succeeded", finished_at=_at(15),
                          characters=5, audio_seconds=0.5, engine="piper")
    operations.delete_job(services, tenant, deleted)

    report = client.get("/v1/usage", params={"month": "2025-03"}).json()
    assert report["month"] == "2025-03"
    assert report["totals"] == {"jobs": 5, "characters": 185, "audio_seconds": 15.25}
    assert report["by_engine"] == {
        "fish-speech": {"jobs": 1, "characters": 50, "audio_seconds": 4.25},
        "piper": {"jobs": 4, "characters": 135, "audio_seconds": 11.0}}
    assert report["days"] == [
        {"date": "2025-03-01", "engine": "fish-speech", "jobs": 1, "characters": 50,
         "audio_seconds": 4.25},
        {"date": "2025-03-01", "engine": "piper", "jobs": 2, "characters": 120,
         "audio_seconds": 9.5},
        {"date": "2025-03-15", "engine": "piper", "jobs": 1, "characters": 5,
         "audio_seconds": 0.5},
        {"date": "2025-03-31", "engine": "piper", "jobs": 1, "characters": 10,
         "audio_seconds": 1.0}]

    response = client.get("/v1/usage?month=2025-03", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["date"], r["engine"], r["jobs"], r["characters"]) for r in rows] == [
        ("2025-03-01", "fish-speech", "1", "50"), ("2025-03-01", "piper", "2", "120"),
        ("2025-03-15", "piper", "1", "5"), ("2025-03-31", "piper", "1", "10")]

    assert other_client.get("/v1/usage?month=2025-03").json()["totals"]["characters"] == 700
    empty = client.get("/v1/usage?month=2024-12").json()
    assert empty["totals"] == {"jobs": 0, "characters": 0, "audio_seconds": 0.0}
    assert empty["days"] == []
    february = client.get("/v1/usage?month=2025-02").json()
    assert february["totals"]["characters"] == 999


def test_month_defaults_to_this_one_and_is_validated(client: TestClient) -> None:
    assert client.get("/v1/usage").json()["month"] == datetime.now(UTC).strftime("%Y-%m")
    for bad in ("2025-13", "2025-3", "25-03", "2025-03-01", "3000-01"):
        problem(client.get("/v1/usage", params={"month": bad}), 422)
    problem(client.get("/v1/usage", headers={"Authorization": ""}), 401)
