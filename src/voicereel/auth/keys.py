"""API keys: who may use one, and the owner's use cases behind `/v1/keys` and the CLI.

A key's plaintext is shown once, when it is made; only its SHA-256 is stored. Revocation,
expiry and rotation are columns of the key's row, read by the one key lookup (`api/deps.py`).
Each process keeps a key's row for `auth_cache_seconds` (`KeyCache`): a revocation or rotation
holds at once on the process that made it and within that time on every other one; expiry is
judged on each request against the clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from voicereel.auth import roles, signing
from voicereel.db import repo
from voicereel.db.tables import ApiKey, Tenant, utcnow
from voicereel.errors import (
    KeyExpired,
    KeyNotRotatable,
    KeyRevoked,
    LastOwnerKey,
    ValidationFailed,
)
from voicereel.services import Services

log = logging.getLogger(__name__)

MAX_ROTATION_GRACE_SECONDS = 24 * 3600
# How often a process writes the last use of the keys it saw
LAST_USED_FLUSH_SECONDS = 30.0


class KeyRequest(BaseModel):
    """`POST /v1/keys`: a new key of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    role: roles.Role
    name: str = Field("", max_length=100)
    expires_at: AwareDatetime | None = None
    rate_limit_per_minute: int | None = Field(None, ge=0, le=1_000_000,
                                              description="0: unlimited; default: the setting")
    max_concurrent_jobs: int | None = Field(None, ge=0, le=10_000,
                                            description="0: unlimited; default: the setting")
    require_signature: bool = False

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # An offset at the ends of the calendar has no UTC time: a 422, not a crash
        try:
            return value.astimezone(UTC) if value is not None else None
        except OverflowError as exc:
            raise ValueError("expires_at is out of range") from exc


class RotateRequest(BaseModel):
    """`POST /v1/keys/{id}/rotate`: how long the old secret keeps working."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: int | None = Field(None, ge=0, le=MAX_ROTATION_GRACE_SECONDS,
                                      description="default: VOICEREEL_KEY_ROTATION_GRACE_SECONDS")


@dataclass
class NewKey:
    """A key just made: its row and the plaintexts shown this once."""

    key: ApiKey
    plaintext: str
    signing_secret: str | None


def check_usable(key: ApiKey, now: datetime | None = None) -> None:
    """Raise KeyRevoked or KeyExpired for a key that may no longer be used."""
    now = now or utcnow()
    if key.revoked_at is not None and key.revoked_at <= now:
        raise KeyRevoked("the API key was revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise KeyExpired("the API key has expired" + (
            " (it was rotated; use its replacement)" if key.replaced_by else ""))


class KeyUses:
    """When this process last saw each key, written to the keys' rows in batches.

    A write per request would put a second transaction into every request and serialise all
    requests on SQLite's one write lock; `last_used_at` is therefore as fresh as the last flush
    (`LAST_USED_FLUSH_SECONDS`), and this process's own listing adds what it has not written.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, key: ApiKey) -> None:
        with self._lock:
            self._seen[key.id] = utcnow()

    def unwritten(self) -> dict[str, datetime]:
        with self._lock:
            return dict(self._seen)

    def flush(self) -> None:
        with self._lock:
            seen, self._seen = self._seen, {}
        if not seen:
            return
        try:
            with self.services.db.session() as session:
                repo.touch_api_keys(session, seen)
        except Exception:
            log.exception("could not record the last use of %d keys; trying again", len(seen))
            with self._lock:
                for key_id, when in seen.items():
                    self._seen.setdefault(key_id, when)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="key-uses", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(LAST_USED_FLUSH_SECONDS):
            self.flush()


class KeyCache:
    """The keys this process authenticated lately (rows of `api_keys` and `tenants`), by the
    key's SHA-256, each for `ttl_seconds` after it was read.

    Reading them for every request cost a database session and a thread hop per request; the
    rows are read-only to the request code, shared by the requests of one key. `clear()` drops
    them all: the key changes of this process call it, so they hold here at once.
    """

    def __init__(self, ttl_seconds: float, max_keys: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: OrderedDict[str, tuple[float, ApiKey, Tenant]] = OrderedDict()

    def get(self, key_hash: str) -> tuple[ApiKey, Tenant] | None:
        with self._lock:
            entry = self._rows.get(key_hash)
            if entry is None:
                return None
            if self._clock() - entry[0] >= self.ttl_seconds:
                del self._rows[key_hash]
                return None
            return entry[1], entry[2]

    def put(self, key_hash: str, key: ApiKey, tenant: Tenant) -> None:
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            self._rows[key_hash] = (self._clock(), key, tenant)
            self._rows.move_to_end(key_hash)
            while len(self._rows) > self.max_keys:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


def create_key(services: Services, tenant: Tenant, request: KeyRequest) -> NewKey:
    """A new key for the tenant; with `require_signature` also its signing secret."""
    if request.expires_at is not None and request.expires_at <= utcnow():
        raise ValidationFailed("expires_at must be in the future", errors=[
            {"loc": ["body", "expires_at"], "msg": "must be in the future"}])
    secret = signing.new_signing_secret() if request.require_signature else None
    sealed = signing.encrypt_secret(services.signing_secret, secret) if secret else None
    with services.db.session() as session:
        key, plaintext = repo.add_api_key(
            session, tenant.id, role=request.role, name=request.name.strip(),
            expires_at=request.expires_at, require_signature=request.require_signature,
            signing_secret=sealed, rate_limit_per_minute=request.rate_limit_per_minute,
            max_concurrent_jobs=request.max_concurrent_jobs)
        session.expunge(key)
    return NewKey(key, plaintext, secret)


def list_keys(services: Services, tenant: Tenant, uses: KeyUses) -> list[ApiKey]:
    """The tenant's keys, newest first, with the uses this process has not written yet."""
    unwritten = uses.unwritten()
    with services.db.session() as session:
        keys = repo.list_api_keys(session, tenant.id)
        session.expunge_all()
    for key in keys:
        seen = unwritten.get(key.id)
        if seen is not None and (key.last_used_at is None or key.last_used_at < seen):
            key.last_used_at = seen
    return keys


def revoke_key(services: Services, cache: KeyCache, tenant: Tenant, key_id: str) -> None:
    """Revoke the key now (on this process's next request at once: `cache` is cleared);
    refused (409) when it is the tenant's last lasting owner key."""
    now = utcnow()
    with services.db.session() as session:
        repo.lock_tenant_keys(session, tenant.id)
        key = repo.get_api_key(session, tenant.id, key_id)
        if key.revoked_at is not None:
            return  # revoking twice changes nothing
        lasting = key.replaced_by is None and (key.expires_at is None or key.expires_at > now)
        if (key.role == roles.OWNER and lasting
                and repo.count_lasting_owner_keys(session, tenant.id, now, key.id) == 0):
            raise LastOwnerKey(f"key {key_id} is the tenant's last owner key; create another "
                               "owner key before revoking it")
        repo.revoke_api_key(session, key, now)
    cache.clear()


def rotate_key(services: Services, cache: KeyCache, tenant: Tenant, key_id: str,
               request: RotateRequest) -> NewKey:
    """A new secret for the key: a new key row with the same role, name, limits and expiry;
    the old one keeps working for the grace period (never longer than it would have; `cache`
    is cleared, so this process sees the new expiry at once)."""
    now = utcnow()
    grace = (request.grace_seconds if request.grace_seconds is not None
             else services.settings.key_rotation_grace_seconds)
    with services.db.session() as session:
        repo.lock_tenant_keys(session, tenant.id)
        old = repo.get_api_key(session, tenant.id, key_id)
        try:
            check_usable(old, now)
        except (KeyRevoked, KeyExpired) as exc:
            raise KeyNotRotatable(f"key {key_id} cannot be rotated: {exc.detail}") from exc
        if old.replaced_by is not None:
            raise KeyNotRotatable(f"key {key_id} was already rotated (replaced by "
                                  f"{old.replaced_by}); rotate that one")
        key, plaintext = repo.add_api_key(
            session, tenant.id, role=old.role, name=old.name, expires_at=old.expires_at,
            require_signature=old.require_signature, signing_secret=old.signing_secret,
            rate_limit_per_minute=old.rate_limit_per_minute,
            max_concurrent_jobs=old.max_concurrent_jobs)
        until = now + timedelta(seconds=grace)
        if old.expires_at is not None:
            until = min(until, old.expires_at)
        if not repo.retire_api_key(session, old, key.id, until):
            raise KeyNotRotatable(f"key {key_id} was rotated or revoked meanwhile")
        session.expunge(key)
    cache.clear()
    # The signing secret (if any) is kept: it is the key's, not the bearer secret's.
    return NewKey(key, plaintext, None)
