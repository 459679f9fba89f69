"""/v1/audit: the tenant's audit log, newest first, for owners."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from voicereel import audit
from voicereel.api.deps import AuditRead, ScopedRoute, ServicesDep
from voicereel.api.schemas import AuditPage, audit_out

router = APIRouter(prefix="/v1", tags=["audit"], route_class=ScopedRoute)


@router.get("/audit", response_model=AuditPage)
def list_audit(
    services: ServicesDep, caller: AuditRead,
    limit: Annotated[int | None, Query(ge=1)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=60, description="e.g. job.submit")] = None,
    since: Annotated[AwareDatetime | None, Query(description="only rows at or after")] = None,
) -> Any:
    """Every state-changing request of the tenant's keys, newest first."""
    settings = services.settings
    size = min(limit or settings.page_size_default, settings.page_size_max)
    found = audit.page(services, caller.tenant.id, size, cursor, action, since)
    return {"items": [audit_out(event) for event in found.items],
            "next_cursor": found.next_cursor}
