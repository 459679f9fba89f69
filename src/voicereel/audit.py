"""The audit log: one row per state-changing request of a known key, read by owners.

Rows are written by `api/audit.py` when the answer starts (so a client that has its answer
finds its row), refused and failed requests included, and removed by the sweep after
`audit_retention_days`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from voicereel.db import repo
from voicereel.db.tables import AuditEvent, utcnow
from voicereel.errors import ValidationFailed
from voicereel.services import Services

# The name of each state-changing operation (its route's endpoint) in the log.
ACTIONS: dict[str, str] = {
    "create_speaker": "speaker.create",
    "delete_speaker": "speaker.delete",
    "synthesize": "job.submit",
    "delete_job": "job.delete",
    "revise_job": "job.revise",
    "create_speech": "speech.render",
    "create_key": "key.create",
    "revoke_key": "key.revoke",
    "rotate_key": "key.rotate",
    "create_lexicon": "lexicon.create",
    "replace_lexicon": "lexicon.replace",
    "delete_lexicon": "lexicon.delete",
}
# Path parameters that name the resource a request acts on.
RESOURCE_PARAMS = ("job_id", "speaker_id", "key_id", "lexicon_id")


@dataclass
class Entry:
    """What the middleware knows of one request when its answer starts."""

    tenant_id: str
    key_id: str
    key_prefix: str
    role: str
    action: str
    resource_id: str | None
    request_id: str | None
    client_ip: str | None
    status: int


def outcome(status: int) -> str:
    return "succeeded" if status < 400 else "refused" if status < 500 else "failed"


def record(services: Services, entry: Entry) -> None:
    with services.db.session() as session:
        repo.add_audit_event(session, AuditEvent(
            tenant_id=entry.tenant_id, at=utcnow(), key_id=entry.key_id,
            key_prefix=entry.key_prefix, role=entry.role, action=entry.action,
            resource_id=entry.resource_id, request_id=entry.request_id,
            client_ip=entry.client_ip, status=entry.status))


def page(services: Services, tenant_id: str, limit: int, cursor: str | None,
         action: str | None, since: datetime | None) -> repo.Page:
    """The tenant's rows, newest first; `since` and `action` filter."""
    if since is not None:
        try:
            since = since.astimezone(UTC)
        except OverflowError as exc:  # an offset at the ends of the calendar
            raise ValidationFailed("since is out of range", errors=[
                {"loc": ["query", "since"], "msg": "out of range"}]) from exc
    with services.db.session() as session:
        return repo.list_audit_events(session, tenant_id, limit, cursor, action, since)


def prune(services: Services) -> int:
    """Drop rows older than the retention; how many went."""
    cutoff = utcnow() - timedelta(days=services.settings.audit_retention_days)
    with services.db.session() as session:
        return repo.delete_audit_events_before(session, cutoff)
