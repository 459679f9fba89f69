"""Usage metering: a tenant's succeeded jobs per month, per UTC day and engine.

Each job records its characters, audio seconds and engine when it finishes (`repo.finish_job`);
reports add them up. Deleted jobs still count (they were rendered); failed ones do not.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Any

from voicereel.db import repo
from voicereel.errors import ValidationFailed
from voicereel.services import Services

MONTH_PATTERN = r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$"  # 1970-01 to 2999-12
CSV_COLUMNS = ("date", "engine", "jobs", "characters", "audio_seconds")


def month_bounds(month: str | None) -> tuple[str, datetime, datetime]:
    """The month (YYYY-MM, default this one in UTC) and its [start, end) in UTC."""
    if month is None:
        month = datetime.now(UTC).strftime("%Y-%m")
    if not re.match(MONTH_PATTERN, month):
        raise ValidationFailed("month must look like 2025-01", errors=[
            {"loc": ["query", "month"], "msg": "expected YYYY-MM"}])
    year, number = int(month[:4]), int(month[5:])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return month, start, end


def usage_report(services: Services, tenant_id: str, month: str | None) -> dict[str, Any]:
    """Totals, totals per engine and one row per day and engine, for JSON or CSV."""
    month, start, end = month_bounds(month)
    with services.db.session() as session:
        rows = repo.usage_by_day(session, tenant_id, start, end)
    days = [{"date": r.day, "engine": r.engine, "jobs": r.jobs, "characters": r.characters,
             "audio_seconds": round(r.audio_seconds, 3)} for r in rows]
    by_engine: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_engine.setdefault(row.engine, {"jobs": 0, "characters": 0,
                                                  "audio_seconds": 0.0})
        entry["jobs"] += row.jobs
        entry["characters"] += row.characters
        entry["audio_seconds"] += row.audio_seconds
    for entry in by_engine.values():
        entry["audio_seconds"] = round(entry["audio_seconds"], 3)
    totals = {"jobs": sum(r.jobs for r in rows), "characters": sum(r.characters for r in rows),
              "audio_seconds": round(sum(r.audio_seconds for r in rows), 3)}
    return {"month": month, "totals": totals, "by_engine": by_engine, "days": days}


def report_csv(report: dict[str, Any]) -> str:
    """One line per day and engine, with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for day in report["days"]:
        writer.writerow(day)
    return out.getvalue()
