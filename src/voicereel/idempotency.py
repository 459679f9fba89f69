"""`Idempotency-Key` for POST /v1/synthesize and POST /v1/speakers.

The first request with a key inserts a pending record (unique per tenant and key), does the
work and stores its answer; a later request with the same key and the same request gets that
stored answer (and `Idempotent-Replayed: true`), with no second resource. When two requests
race, the unique constraint lets exactly one insert; the other polls until the winner's answer
is stored (at most `idempotency_wait_seconds`, then 409). The same key with a different request
is refused with 422. A request that fails frees its key, so a corrected retry can use it.
A record still pending after `idempotency_lease_seconds` was left by a process that died
mid-request; a retry of the same request takes it over (one conditional update, so of racing
retries exactly one) and runs it. Records are kept `idempotency_ttl_seconds` (24 h).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voicereel.db import repo
from voicereel.db.tables import utcnow
from voicereel.errors import IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed
from voicereel.services import Services

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
_POLL_SECONDS = 0.05


@dataclass
class StoredResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def render(self, replayed: bool = False) -> JSONResponse:
        headers = dict(self.headers)
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(self.body, status_code=self.status, headers=headers)


def fingerprint(method: str, path: str, content: Any) -> str:
    """A digest of what the request asks for (parsed content, so JSON spacing or multipart
    boundaries do not matter)."""
    canonical = json.dumps([method.upper(), path, content], sort_keys=True, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def respond(services: Services, tenant_id: str, key: str | None, request_fingerprint: str,
            produce: Callable[[], StoredResponse]) -> JSONResponse:
    """Run `produce` once per (tenant, key); replay its stored answer for repeats."""
    _check_key(key)
    if key is None:
        return produce().render()
    settings = services.settings
    deadline = time.monotonic() + settings.idempotency_wait_seconds
    while True:
        if _claim(services, tenant_id, key, request_fingerprint):
            break
        stored = _stored(services, tenant_id, key, request_fingerprint)
        if stored is not None:
            return stored.render(replayed=True)
        if _take_over(services, tenant_id, key, request_fingerprint):
            break
        if time.monotonic() > deadline:
            raise IdempotencyKeyInUse(f"a request with this {HEADER} is still being processed; "
                                      "retry it later")
        time.sleep(_POLL_SECONDS)
    try:
        response = produce()
    except BaseException:
        with services.db.session() as session:
            repo.delete_idempotency_records(session, tenant_id, key=key)
        raise
    with services.db.session() as session:
        repo.complete_idempotency_record(session, tenant_id, key, response.status,
                                         response.body, response.headers)
    return response.render()


def respond_in_one_transaction(
        services: Services, tenant_id: str, key: str | None, request_fingerprint: str,
        produce: Callable[[Session], StoredResponse]) -> tuple[StoredResponse, bool]:
    """Run `produce` and record its answer in one transaction; (answer, replayed).

    For requests whose work is only database writes (a job submission): a racing duplicate's
    insert of the key waits for this transaction, then finds the stored answer. Nothing of a
    failed request remains, so a corrected retry can use the key.
    """
    _check_key(key)
    with services.db.session() as session:
        if key is not None:
            cutoff = utcnow() - timedelta(seconds=services.settings.idempotency_ttl_seconds)
            repo.delete_idempotency_records(session, tenant_id, created_before=cutoff)
            try:
                with session.begin_nested():
                    repo.add_idempotency_record(session, tenant_id, key, request_fingerprint)
            except IntegrityError:
                stored = _stored_in(session, services, tenant_id, key, request_fingerprint)
                if stored is None:  # an upload with this key is still being processed
                    raise IdempotencyKeyInUse(f"a request with this {HEADER} is still being "
                                              "processed; retry it later") from None
                return stored, True
        response = produce(session)
        if key is not None:
            repo.complete_idempotency_record(session, tenant_id, key, response.status,
                                             response.body, response.headers)
    return response, False


def _check_key(key: str | None) -> None:
    if key is not None and (not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable()):
        raise ValidationFailed(f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable characters",
                               errors=[{"loc": ["header", HEADER], "msg": "invalid key"}])


def _claim(services: Services, tenant_id: str, key: str, request_fingerprint: str) -> bool:
    """Insert the pending record; False when the key is taken (by a live record)."""
    cutoff = utcnow() - timedelta(seconds=services.settings.idempotency_ttl_seconds)
    with services.db.session() as session:
        repo.delete_idempotency_records(session, tenant_id, created_before=cutoff)
    try:
        with services.db.session() as session:
            repo.add_idempotency_record(session, tenant_id, key, request_fingerprint)
    except IntegrityError:
        return False
    return True


def _take_over(services: Services, tenant_id: str, key: str, request_fingerprint: str) -> bool:
    """Claim the key from a request that has held it pending for longer than the lease."""
    stale = utcnow() - timedelta(seconds=services.settings.idempotency_lease_seconds)
    with services.db.session() as session:
        return repo.take_over_idempotency_record(session, tenant_id, key, request_fingerprint,
                                                 pending_before=stale)


def _stored(services: Services, tenant_id: str, key: str,
            request_fingerprint: str) -> StoredResponse | None:
    """The finished answer for the key; None while pending (or freed by a failure)."""
    with services.db.session() as session:
        return _stored_in(session, services, tenant_id, key, request_fingerprint)


def _stored_in(session: Session, services: Services, tenant_id: str, key: str,
               request_fingerprint: str) -> StoredResponse | None:
    record = repo.get_idempotency_record(session, tenant_id, key)
    if record is None:
        return None
    if record.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            f"this {HEADER} was used for a different request in the last "
            f"{services.settings.idempotency_ttl_seconds // 3600} h; use a new key")
    if record.status is None or record.body is None:
        return None
    return StoredResponse(record.status, dict(record.body), dict(record.headers or {}))
