"""/v1/usage: what a tenant used in a month, as JSON or (Accept: text/csv) CSV."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from voicereel import usage
from voicereel.api.deps import ScopedRoute, ServicesDep, UsageRead
from voicereel.api.schemas import UsageReport

router = APIRouter(prefix="/v1", tags=["usage"], route_class=ScopedRoute)


@router.get("/usage", response_model=UsageReport, responses={200: {"content": {
    "text/csv": {"schema": {"type": "string"}}}}})
def get_usage(request: Request, services: ServicesDep, caller: UsageRead,
              month: Annotated[str | None, Query(pattern=usage.MONTH_PATTERN,
                                                 description="YYYY-MM (UTC); default: this month"
                                                 )] = None) -> Any:
    report = usage.usage_report(services, caller.tenant.id, month)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(usage.report_csv(report), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="usage-{report["month"]}.csv"'})
    return report
