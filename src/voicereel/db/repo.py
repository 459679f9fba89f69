"""Every query of the service. Customer-facing reads and writes always take the tenant.

Worker-side functions (`claim_job`, `record_progress`, `finish_job`, ...) address a job by id
only: the job row itself carries its tenant, and workers never act on a client's say-so.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from voicereel.db.tables import (
    ApiKey,
    AuditEvent,
    Base,
    IdempotencyRecord,
    Job,
    JobFile,
    JobRevision,
    JobUnit,
    Lexicon,
    SeenSignature,
    Speaker,
    StoragePurge,
    Tenant,
    UTCDateTime,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from voicereel.domain.jobs import UNFINISHED
from voicereel.errors import BadRequest, NotFound

# lease_owner of a render served outside the job queue (POST /v1/audio/speech)
DIRECT_RENDER = "direct-render"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


# --- tenants and keys -------------------------------------------------------------------------


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_api_key(session: Session, tenant_id: str, *, require_signature: bool = False,
                   signing_secret: str | None = None, rate_limit_per_minute: int | None = None,
                   max_concurrent_jobs: int | None = None, role: str = "owner", name: str = "",
                   expires_at: datetime | None = None) -> str:
    """Store a new key (hashed) for the tenant and return its plaintext, shown once.

    `signing_secret` is stored as given (the caller encrypts it); the limits override the
    service-wide settings for this key.
    """
    return add_api_key(session, tenant_id, require_signature=require_signature,
                       signing_secret=signing_secret,
                       rate_limit_per_minute=rate_limit_per_minute,
                       max_concurrent_jobs=max_concurrent_jobs, role=role, name=name,
                       expires_at=expires_at)[1]


def add_api_key(session: Session, tenant_id: str, *, require_signature: bool = False,
                signing_secret: str | None = None, rate_limit_per_minute: int | None = None,
                max_concurrent_jobs: int | None = None, role: str = "owner", name: str = "",
                expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """As `create_api_key`, returning the stored row too."""
    plaintext = "vr_" + secrets.token_urlsafe(32)
    key = ApiKey(id=new_id("key"), tenant_id=tenant_id, key_hash=hash_key(plaintext),
                 prefix=plaintext[:10], require_signature=require_signature,
                 signing_secret=signing_secret, rate_limit_per_minute=rate_limit_per_minute,
                 max_concurrent_jobs=max_concurrent_jobs, role=role, name=name,
                 expires_at=expires_at)
    session.add(key)
    session.flush()
    return key, plaintext


# The statements of every request (its key, a job poll) are built once: building a select
# costs about as much as running it.
_KEY_AND_TENANT = (select(ApiKey, Tenant).join(Tenant, ApiKey.tenant_id == Tenant.id)
                   .where(ApiKey.key_hash == bindparam("key_hash")))


def key_and_tenant(session: Session, plaintext: str) -> tuple[ApiKey, Tenant] | None:
    """The key with this plaintext (revoked and expired ones too) and its tenant, or None."""
    return key_and_tenant_by_hash(session, hash_key(plaintext))


def key_and_tenant_by_hash(session: Session, key_hash: str) -> tuple[ApiKey, Tenant] | None:
    """As `key_and_tenant`, by the plaintext's `hash_key`."""
    row = session.execute(_KEY_AND_TENANT, {"key_hash": key_hash}).first()
    return (row[0], row[1]) if row else None


def touch_api_keys(session: Session, used: dict[str, datetime]) -> None:
    """Record when keys were last used (never moving a key's time backwards)."""
    for key_id, when in used.items():
        session.execute(update(ApiKey).where(
            ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when))
            .values(last_used_at=when))


def list_api_keys(session: Session, tenant_id: str) -> list[ApiKey]:
    """Every key of the tenant, revoked ones too, newest first."""
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id)
                                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


def get_api_key(session: Session, tenant_id: str, key_id: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.tenant_id == tenant_id,
                                              ApiKey.id == key_id))
    if key is None:
        raise NotFound(f"key {key_id} not found")
    return key


def lock_tenant_keys(session: Session, tenant_id: str) -> None:
    """Serialise the transactions that change a tenant's keys (the last-owner rule counts
    keys, then revokes one). Call it first; as `lock_api_key`, on the tenant's row."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    else:
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name))


def count_lasting_owner_keys(session: Session, tenant_id: str, now: datetime,
                             excluding: str) -> int:
    """The tenant's owner keys that stay usable: not revoked, not expired, not rotated away."""
    return session.scalar(
        select(func.count()).select_from(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.role == "owner", ApiKey.id != excluding,
               ApiKey.revoked_at.is_(None), ApiKey.replaced_by.is_(None),
               or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    ) or 0


def revoke_api_key(session: Session, key: ApiKey, now: datetime) -> None:
    if key.revoked_at is None:
        key.revoked_at = now
        session.flush()


def retire_api_key(session: Session, key: ApiKey, replaced_by: str,
                   expires_at: datetime) -> bool:
    """Mark `key` replaced by a rotation, usable until `expires_at`; False when another
    rotation or a revocation got there first."""
    result = session.execute(update(ApiKey).where(
        ApiKey.id == key.id, ApiKey.replaced_by.is_(None), ApiKey.revoked_at.is_(None))
        .values(replaced_by=replaced_by, expires_at=expires_at))
    return bool(getattr(result, "rowcount", 0))


def tenant_webhook_secret(session: Session, tenant_id: str, make_secret: Callable[[], str]) -> str:
    """The tenant's webhook signing secret, made on first use."""
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("tenant not found")
    if tenant.webhook_secret is None:
        tenant.webhook_secret = make_secret()
        session.flush()
    return tenant.webhook_secret


def tenant_for_key(session: Session, plaintext: str) -> Tenant | None:
    return session.scalar(
        select(Tenant).join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_key(plaintext), ApiKey.revoked_at.is_(None))
    )


def count_tenants(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Tenant)) or 0


# --- pagination -------------------------------------------------------------------------------


def _encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not valid; use next_cursor from the previous page") from exc


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


# --- speakers ---------------------------------------------------------------------------------


def add_speaker(session: Session, speaker: Speaker) -> Speaker:
    session.add(speaker)
    session.flush()
    return speaker


def get_speaker(session: Session, tenant_id: str, speaker_id: str) -> Speaker:
    speaker = session.scalar(
        select(Speaker).where(Speaker.tenant_id == tenant_id, Speaker.id == speaker_id)
    )
    if speaker is None:
        raise NotFound(f"speaker {speaker_id} not found")
    return speaker


def speakers_by_id(session: Session, tenant_id: str, ids: set[str]) -> dict[str, Speaker]:
    rows = session.scalars(
        select(Speaker).where(Speaker.tenant_id == tenant_id, Speaker.id.in_(ids))
    )
    return {row.id: row for row in rows}


def add_lexicon(session: Session, lexicon: Lexicon) -> Lexicon:
    session.add(lexicon)
    session.flush()
    return lexicon


def get_lexicon(session: Session, tenant_id: str, lexicon_id: str) -> Lexicon:
    lexicon = session.scalar(
        select(Lexicon).where(Lexicon.tenant_id == tenant_id, Lexicon.id == lexicon_id))
    if lexicon is None:
        raise NotFound(f"lexicon {lexicon_id} not found")
    return lexicon


def lexicons_by_id(session: Session, tenant_id: str, ids: list[str]) -> dict[str, Lexicon]:
    rows = session.scalars(
        select(Lexicon).where(Lexicon.tenant_id == tenant_id, Lexicon.id.in_(ids)))
    return {row.id: row for row in rows}


def list_lexicons(session: Session, tenant_id: str, limit: int, cursor: str | None) -> Page:
    """Newest first; the cursor is the (created_at, id) of the last row seen."""
    query = select(Lexicon).where(Lexicon.tenant_id == tenant_id)
    if cursor:
        created_at, row_id = _decode_cursor(cursor)
        query = query.where(or_(Lexicon.created_at < created_at,
                                and_(Lexicon.created_at == created_at, Lexicon.id < row_id)))
    rows = list(session.scalars(
        query.order_by(Lexicon.created_at.desc(), Lexicon.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    return Page(rows, next_cursor)


def update_lexicon(session: Session, tenant_id: str, lexicon_id: str, *, name: str, lang: str,
                   rules: dict[str, Any]) -> Lexicon:
    lexicon = get_lexicon(session, tenant_id, lexicon_id)
    lexicon.name, lexicon.lang, lexicon.rules = name, lang, rules
    lexicon.updated_at = utcnow()
    session.flush()
    return lexicon


def delete_lexicon(session: Session, tenant_id: str, lexicon_id: str) -> None:
    session.delete(get_lexicon(session, tenant_id, lexicon_id))
    session.flush()


def speaker_names(session: Session, tenant_id: str) -> list[tuple[str, str]]:
    """(id, name) of every speaker of the tenant, oldest first: for resolving names."""
    rows = session.execute(
        select(Speaker.id, Speaker.name).where(Speaker.tenant_id == tenant_id)
        .order_by(Speaker.created_at, Speaker.id))
    return [(row.id, row.name) for row in rows]


def list_speakers(session: Session, tenant_id: str, limit: int, cursor: str | None,
                  name: str | None = None) -> Page:
    """Newest first, only those whose name contains `name` (case-insensitive) if given; the
    cursor is the (created_at, id) of the last row seen."""
    query = select(Speaker).where(Speaker.tenant_id == tenant_id)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Speaker.name.ilike(f"%{escaped}%", escape="\\"))
    if cursor:
        created_at, row_id = _decode_cursor(cursor)
        query = query.where(or_(Speaker.created_at < created_at,
                                and_(Speaker.created_at == created_at, Speaker.id < row_id)))
    rows = list(session.scalars(
        query.order_by(Speaker.created_at.desc(), Speaker.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    return Page(rows, next_cursor)


def delete_speaker(session: Session, tenant_id: str, speaker_id: str, prefix: str) -> int:
    """Remove the speaker and note its files under `prefix` for removal; the purge's id."""
    speaker = get_speaker(session, tenant_id, speaker_id)
    session.delete(speaker)
    session.flush()
    return add_storage_purge(session, prefix)


# --- jobs: customer side ----------------------------------------------------------------------


def add_job(session: Session, job: Job) -> Job:
    session.add(job)
    session.flush()
    return job


# The tenant's job, unless deleted
_TENANT_JOB = (Job.tenant_id == bindparam("tenant_id"), Job.id == bindparam("job_id"),
               Job.deleted_at.is_(None))
_JOB = select(Job).where(*_TENANT_JOB)
_JOB_FILES = (select(JobFile).where(JobFile.job_id == bindparam("job_id"),
                                    JobFile.revision == bindparam("revision"))
              .order_by(JobFile.id))


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.scalar(_JOB, {"tenant_id": tenant_id, "job_id": job_id})
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


# One round trip for a poll: the job row beside each file of its revision once it succeeded.
_JOB_WITH_FILES = (select(Job, JobFile)
                   .outerjoin(JobFile, and_(JobFile.job_id == Job.id,
                                            JobFile.revision == Job.revision,
                                            Job.status == "succeeded"))
                   .where(*_TENANT_JOB)
                   .order_by(JobFile.id))


def get_job_with_files(session: Session, tenant_id: str, job_id: str
                       ) -> tuple[Job, list[JobFile]]:
    """The tenant's job and, when it succeeded, the files of its revision (NotFound if not
    the tenant's)."""
    rows = session.execute(_JOB_WITH_FILES, {"tenant_id": tenant_id, "job_id": job_id}).all()
    if not rows:
        raise NotFound(f"job {job_id} not found")
    return rows[0][0], [file for _, file in rows if file is not None]


def job_files(session: Session, job_id: str, revision: int) -> list[JobFile]:
    """The files of one revision of the job."""
    return list(session.scalars(_JOB_FILES, {"job_id": job_id, "revision": revision}))


def job_revisions(session: Session, job_id: str) -> list[JobRevision]:
    """The job's superseded revisions, oldest first (the job row is the latest)."""
    return list(session.scalars(select(JobRevision).where(JobRevision.job_id == job_id)
                                .order_by(JobRevision.number)))


def revise_job(session: Session, job: Job, *, request: dict[str, Any], edits: list[Any],
               reused_from: list[int | None], units_total: int, request_id: str | None,
               revisions_kept: int) -> list[int] | None:
    """Make `request` the job's next revision, queued, in the caller's transaction.

    The current revision is archived as it is; each line of the new one that reuses a line of
    the current one points at that line's unit (`reused_from`, None: the line renders). The
    revisions retention no longer keeps lose their audio, stems and units not used by a kept
    revision; returns the purge ids for the caller to run after the commit, or None when the
    job is rendering (or was revised meanwhile) and cannot be revised now.
    """
    current, now = job.revision, utcnow()
    archived = JobRevision(
        job_id=job.id, number=current, request=job.request, edits=job.revision_edits,
        status=job.status, error=job.error, units_total=job.units_total,
        characters=job.characters, audio_seconds=job.audio_seconds, engine=job.engine,
        created_at=job.revised_at or job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, files_kept=True)
    previous = {row.index: row for row in session.scalars(
        select(JobUnit).where(JobUnit.job_id == job.id, JobUnit.revision == current))}
    carried = [JobUnit(job_id=job.id, revision=current + 1, index=index, key=source.key,
                       rendered_in=source.rendered_in, seed=source.seed, created_at=now)
               for index, old in enumerate(reused_from)
               if old is not None and (source := previous.get(old)) is not None]
    # The conditional update comes first: it takes the row (or SQLite's write) lock, so of
    # two revisions posted at once exactly one finds the revision it was made from.
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.revision == current, Job.status.in_(("succeeded", "failed")),
               Job.deleted_at.is_(None))
        .values(revision=current + 1, request=request, revision_edits=edits, revised_at=now,
                status="queued", units_total=units_total, units_done=len(carried),
                progress=len(carried) / units_total, error=None, attempts=0, lease_owner=None,
                lease_expires_at=None, retry_at=None, characters=0, audio_seconds=None,
                started_at=None, finished_at=None, request_id=request_id)
        .execution_options(synchronize_session=False))
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    session.add(archived)
    session.add_all(carried)
    # the new revision's end gets a callback of its own (a pending one delivers the latest)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job.id,
                                                  WebhookDelivery.state != "pending"))
    session.flush()
    return _drop_old_revision_files(session, job.id, current + 1 - revisions_kept)


def _drop_old_revision_files(session: Session, job_id: str, last_dropped: int) -> list[int]:
    """Remove the audio, stems and line units of revisions up to `last_dropped`, keeping
    their request and captions, and any unit a later revision still uses."""
    purges: list[int] = []
    for revision in session.scalars(select(JobRevision).where(
            JobRevision.job_id == job_id, JobRevision.number <= last_dropped,
            JobRevision.files_kept.is_(True))):
        media = [f for f in job_files(session, job_id, revision.number)
                 if f.kind == "audio" or f.kind.startswith("stem:")]
        for file in media:
            purges.append(add_storage_purge(session, file.key))
            session.delete(file)
        keys = set(session.scalars(select(JobUnit.key).where(
            JobUnit.job_id == job_id, JobUnit.revision == revision.number)))
        session.execute(delete(JobUnit).where(JobUnit.job_id == job_id,
                                              JobUnit.revision == revision.number))
        still_used = set(session.scalars(select(JobUnit.key).where(
            JobUnit.job_id == job_id, JobUnit.key.in_(keys))))
        for key in sorted(keys - still_used):
            purges.append(add_storage_purge(session, key.rsplit("/", 1)[0]))  # the take folder
        revision.files_kept = False
    return purges


def delete_job(session: Session, tenant_id: str, job_id: str, prefix: str) -> int:
    """Cancel the job if unfinished, hide it, and note its files under `prefix` for removal.

    Returns the purge's id: the caller removes the files after the commit (`outbox.purge`),
    and the sweep retries that until it succeeds.
    """
    job = get_job(session, tenant_id, job_id)
    now = utcnow()
    if job.status in UNFINISHED:
        job.status = "canceled"
        job.finished_at = now
        job.lease_owner = None
    job.deleted_at = now
    session.execute(delete(JobFile).where(JobFile.job_id == job.id))
    session.execute(delete(JobUnit).where(JobUnit.job_id == job.id))
    return add_storage_purge(session, prefix)


def owner_is_live(session: Session, tenant_id: str, kind: str, owner_id: str) -> bool:
    """True while the job (`kind` "jobs") or speaker ("speakers") exists and is not deleted."""
    if kind == "jobs":
        query = select(func.count()).select_from(Job).where(
            Job.tenant_id == tenant_id, Job.id == owner_id, Job.deleted_at.is_(None))
    elif kind == "speakers":
        query = select(func.count()).select_from(Speaker).where(
            Speaker.tenant_id == tenant_id, Speaker.id == owner_id)
    else:
        return False
    return session.scalar(query) == 1


# --- jobs: worker side ------------------------------------------------------------------------


def load_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def _claimable(now: datetime) -> ColumnElement[bool]:
    """A job some attempt should run now: queued (and its retry time come), or running under
    a lease that ran out (its worker died)."""
    return and_(Job.deleted_at.is_(None),
                or_(and_(Job.status == "queued",
                         or_(Job.retry_at.is_(None), Job.retry_at <= now)),
                    and_(Job.status == "running", Job.lease_expires_at < now)))


def claim_job(session: Session, job_id: str, owner: str, lease_seconds: float,
              max_attempts: int) -> Job | None:
    """Take the job if it is claimable and has attempts left; its row if this caller got it."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts < max_attempts, _claimable(now))
        .values(status="running", lease_owner=owner, attempts=Job.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_seconds), retry_at=None,
                started_at=func.coalesce(Job.started_at, now))
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return session.get(Job, job_id, populate_existing=True)


def extend_leases(session: Session, owners: list[str], lease_seconds: float) -> None:
    """Heartbeat: the jobs these owners are running stay theirs while their process lives."""
    session.execute(
        update(Job).where(Job.status == "running", Job.lease_owner.in_(owners))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )


def fail_exhausted_jobs(session: Session, max_attempts: int, limit: int = 500) -> int:
    """Jobs whose every attempt died or was put back get a readable error, not a stuck state.

    Each is failed on its own, so that exactly the jobs this call failed get a callback.
    """
    now = utcnow()
    verdict = f"the job was attempted {max_attempts} times and no attempt finished"
    exhausted = and_(Job.attempts >= max_attempts, _claimable(now))
    failed = 0
    for job_id in list(session.scalars(select(Job.id).where(exhausted).limit(limit))):
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, exhausted)
            .values(status="failed", finished_at=now, lease_owner=None, retry_at=None,
                    # a job put back by a transient failure says what that failure was
                    error=func.coalesce(literal(verdict + "; the last: ") + Job.error,
                                        literal(verdict)))
        )
        if result.rowcount:  # type: ignore[attr-defined]
            _queue_webhook(session, job_id)
            failed += 1
    return failed


def finish_job(session: Session, job_id: str, owner: str, revision: int, files: list[JobFile],
               audio_seconds: float, characters: int, engine: str) -> bool:
    """Mark the job's revision succeeded with exactly these files; False if it was canceled
    meanwhile."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.lease_owner == owner,
               Job.revision == revision, Job.deleted_at.is_(None))
        .values(status="succeeded", progress=1.0, finished_at=utcnow(), lease_owner=None,
                error=None, audio_seconds=audio_seconds, characters=characters, engine=engine)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(delete(JobFile).where(JobFile.job_id == job_id,
                                          JobFile.revision == revision))
    session.add_all(files)
    _queue_webhook(session, job_id)
    return True


def start_direct_render(session: Session, tenant_id: str, api_key_id: str | None,
                        request: dict[str, Any], lease_seconds: float) -> str:
    """A render served outside the job queue, as a running and already hidden job: it holds
    one of the key's job slots until `finish_direct_render`, or until its lease runs out when
    the process serving it died. Hidden jobs are never dispatched. Returns the job id."""
    now = utcnow()
    job = Job(id=new_id("job"), tenant_id=tenant_id, status="running", request=request,
              units_total=1, attempts=1, api_key_id=api_key_id, lease_owner=DIRECT_RENDER,
              lease_expires_at=now + timedelta(seconds=lease_seconds), created_at=now,
              started_at=now, deleted_at=now)
    session.add(job)
    session.flush()
    return job.id


def finish_direct_render(session: Session, job_id: str, *, characters: int,
                         audio_seconds: float | None, engine: str, error: str | None) -> None:
    """Free the render's slot; a succeeded one is metered like a job (usage counts it)."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == DIRECT_RENDER)
        .values(status="failed" if error else "succeeded", progress=1.0,
                units_done=0 if error else 1, finished_at=utcnow(), lease_owner=None,
                error=error, characters=characters, audio_seconds=audio_seconds, engine=engine))


def job_is_gone(session: Session, job_id: str) -> bool:
    """True once the customer canceled or deleted the job (its files must not remain)."""
    job = session.get(Job, job_id)
    return job is None or job.deleted_at is not None or job.status == "canceled"


def fail_job(session: Session, job_id: str, owner: str, error: str) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.lease_owner == owner)
        .values(status="failed", finished_at=utcnow(), lease_owner=None, error=error)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    _queue_webhook(session, job_id)
    return True


def release_job(session: Session, job_id: str, owner: str, *, retry_in: float,
                reason: str) -> None:
    """Give a running job back to the queue, to be claimed again after `retry_in` seconds.

    Its units stay; `reason` is shown as the job's error while it waits.
    """
    session.execute(
        update(Job).where(Job.id == job_id, Job.status == "running", Job.lease_owner == owner)
        .values(status="queued", lease_owner=None, lease_expires_at=None, error=reason,
                retry_at=utcnow() + timedelta(seconds=retry_in))
    )


def dispatchable_jobs(session: Session, limit: int = 500) -> list[tuple[str, int]]:
    """(id, attempts) of the jobs some attempt should run now, oldest first."""
    rows = session.execute(
        select(Job.id, Job.attempts).where(_claimable(utcnow()))
        .order_by(Job.created_at).limit(limit)
    )
    return [(job_id, attempts) for job_id, attempts in rows]


def count_jobs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: count for status, count in rows}


def oldest_due_queued_at(session: Session) -> datetime | None:
    """Since when the longest-waiting queued job has been due (all tenants; for /metrics).

    A job is due from its retry time, else its latest revision, else its submission: a job
    deferred on purpose, or revised today, has not been waiting since it was first made.
    """
    now = utcnow()
    due = func.coalesce(Job.retry_at, Job.revised_at, Job.created_at)
    row = session.execute(
        select(Job.retry_at, Job.revised_at, Job.created_at)
        .where(Job.status == "queued", Job.deleted_at.is_(None),
               or_(Job.retry_at.is_(None), Job.retry_at <= now))
        .order_by(due).limit(1)).first()
    if row is None:
        return None
    retry_at, revised_at, created_at = row
    return retry_at or revised_at or created_at


# --- trust: rate limits, signatures, idempotency, webhooks, usage -----------------------------


def lock_api_key(session: Session, api_key_id: str) -> None:
    """Serialise the transactions that check and then take one of the key's job slots.

    Call it first in the transaction. PostgreSQL locks the key's row; SQLite has no row locks,
    so a write takes the database write lock: the next caller waits for the commit (a read
    first would let two callers count the same slots free).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(ApiKey.id).where(ApiKey.id == api_key_id).with_for_update())
    else:
        session.execute(update(ApiKey).where(ApiKey.id == api_key_id)
                        .values(prefix=ApiKey.prefix))


def count_unfinished_jobs_for_key(session: Session, api_key_id: str) -> int:
    """The key's queued and running jobs, and its direct renders still in flight."""
    return session.scalar(
        select(func.count()).select_from(Job)
        .where(Job.api_key_id == api_key_id, Job.status.in_(UNFINISHED),
               or_(Job.deleted_at.is_(None),
                   and_(Job.lease_owner == DIRECT_RENDER, Job.lease_expires_at > utcnow())))
    ) or 0


def add_seen_signature(session: Session, signature: str, expires_at: datetime) -> None:
    """Remember an accepted signature; a second insert of it raises IntegrityError (a replay)."""
    session.execute(delete(SeenSignature).where(SeenSignature.expires_at < utcnow()))
    session.add(SeenSignature(signature=signature, expires_at=expires_at))
    session.flush()


def add_idempotency_record(session: Session, tenant_id: str, key: str,
                           fingerprint: str) -> None:
    """Claim the key with a pending record; IntegrityError when it is already claimed."""
    session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, fingerprint=fingerprint))
    session.flush()


def get_idempotency_record(session: Session, tenant_id: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key))


def take_over_idempotency_record(session: Session, tenant_id: str, key: str,
                                 fingerprint: str, pending_before: datetime) -> bool:
    """Claim a record still pending since before `pending_before` (its request died) for a
    retry of the same request; True if this caller got it. Of racing retries one wins."""
    result = session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key,
               IdempotencyRecord.fingerprint == fingerprint,
               IdempotencyRecord.status.is_(None), IdempotencyRecord.created_at < pending_before)
        .values(created_at=utcnow()))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete_idempotency_record(session: Session, tenant_id: str, key: str, status: int,
                                body: dict[str, Any], headers: dict[str, str]) -> None:
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
        .values(status=status, body=body, headers=headers))


def delete_idempotency_records(session: Session, tenant_id: str, key: str | None = None,
                               created_before: datetime | None = None) -> None:
    """Drop one key's record, or the tenant's records older than `created_before`."""
    query = delete(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant_id)
    if key is not None:
        query = query.where(IdempotencyRecord.key == key)
    if created_before is not None:
        query = query.where(IdempotencyRecord.created_at < created_before)
    session.execute(query)


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _queue_webhook(session: Session, job_id: str) -> None:
    """The outbox row of a job that just reached a final state, if it has a callback URL.

    Written in the transaction that sets the state, so no crash can lose the callback; a job
    gets one delivery however often it ends.
    """
    request = session.scalar(select(Job.request).where(Job.id == job_id)) or {}
    if request.get("callback_url"):
        session.execute(_insert(session)(WebhookDelivery)
                        .values(job_id=job_id, state="pending", attempts=0,
                                next_attempt_at=utcnow(), created_at=utcnow())
                        .on_conflict_do_nothing())


def due_webhook_deliveries(session: Session, limit: int = 100) -> list[str]:
    """Job ids of pending deliveries whose next attempt is due, oldest first."""
    return list(session.scalars(
        select(WebhookDelivery.job_id)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= utcnow())
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)))


def claim_webhook_delivery(session: Session, job_id: str, hold_seconds: float) -> int | None:
    """Take the job's delivery if due: its next attempt moves `hold_seconds` away meanwhile.

    Returns the number the attempt gets, or None when the delivery is not due or another
    process took it.
    """
    now = utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id, WebhookDelivery.state == "pending",
               WebhookDelivery.next_attempt_at <= now)
        .values(next_attempt_at=now + timedelta(seconds=hold_seconds))
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    attempts = session.scalar(select(WebhookDelivery.attempts)
                              .where(WebhookDelivery.job_id == job_id))
    return int(attempts or 0) + 1


def record_webhook_attempt(session: Session, job_id: str, attempt: int, status_code: int | None,
                           error: str | None, state: str,
                           next_attempt_at: datetime | None = None) -> None:
    """Keep an attempt of the job's delivery and what comes next: `state` pending (then at
    `next_attempt_at`), delivered or failed (no attempts left)."""
    session.add(WebhookAttempt(job_id=job_id, attempt=attempt, status_code=status_code,
                               error=error))
    values: dict[str, Any] = {"attempts": attempt, "state": state, "last_error": error}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    session.execute(update(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                    .values(**values))


def end_webhook_delivery(session: Session, job_id: str, state: str, reason: str) -> None:
    """Stop a delivery without an attempt (the job was deleted meanwhile)."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                    .values(state=state, last_error=reason))


def webhook_delivery(session: Session, job_id: str) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, job_id)


_WEBHOOK_ATTEMPTS = (select(WebhookAttempt).where(WebhookAttempt.job_id == bindparam("job_id"))
                     .order_by(WebhookAttempt.attempt, WebhookAttempt.id))


def webhook_attempts(session: Session, job_id: str) -> list[WebhookAttempt]:
    return list(session.scalars(_WEBHOOK_ATTEMPTS, {"job_id": job_id}))


@dataclass
class UsageRow:
    day: str  # YYYY-MM-DD, UTC
    engine: str
    jobs: int
    characters: int
    audio_seconds: float


def usage_by_day(session: Session, tenant_id: str, start: datetime,
                 end: datetime) -> list[UsageRow]:
    """Succeeded revisions finished in [start, end) per UTC day and engine, deleted jobs
    included: each revision's characters are the lines it rendered; a job counts once, by
    its first revision."""
    latest = select(Job.finished_at.label("finished_at"), Job.engine.label("engine"),
                    case((Job.revision == 1, 1), else_=0).label("jobs"),
                    Job.characters.label("characters"),
                    func.coalesce(Job.audio_seconds, 0.0).label("audio_seconds")).where(
        Job.tenant_id == tenant_id, Job.status == "succeeded",
        Job.finished_at >= start, Job.finished_at < end)
    earlier = select(JobRevision.finished_at, JobRevision.engine,
                     case((JobRevision.number == 1, 1), else_=0), JobRevision.characters,
                     func.coalesce(JobRevision.audio_seconds, 0.0)).join(
        Job, Job.id == JobRevision.job_id).where(
        Job.tenant_id == tenant_id, JobRevision.status == "succeeded",
        JobRevision.finished_at >= start, JobRevision.finished_at < end)
    renders = union_all(latest, earlier).subquery()
    if session.get_bind().dialect.name == "postgresql":
        day = func.to_char(func.timezone("UTC", renders.c.finished_at), "YYYY-MM-DD")
    else:  # SQLite keeps UTC timestamps as ISO text
        day = func.substr(renders.c.finished_at, 1, 10)
    rows = session.execute(
        select(day.label("day"), renders.c.engine, func.sum(renders.c.jobs),
               func.sum(renders.c.characters), func.sum(renders.c.audio_seconds))
        .group_by(day, renders.c.engine).order_by(day, renders.c.engine))
    return [UsageRow(str(d), engine, int(n), int(chars or 0), float(secs or 0.0))
            for d, engine, n, chars, secs in rows]


# --- line units (jobs/units.py) and the runners' ownership checks ----------------------------


def job_is_running(session: Session, job_id: str) -> bool:
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.id == job_id, Job.status == "running", Job.deleted_at.is_(None))) == 1


def holds_lease(session: Session, job_id: str, owner: str) -> bool:
    """True while `owner` is the attempt running the job."""
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.id == job_id, Job.status == "running", Job.lease_owner == owner,
        Job.deleted_at.is_(None))) == 1


def unit_done(session: Session, job_id: str, revision: int, index: int) -> bool:
    return session.get(JobUnit, (job_id, revision, index)) is not None


def unit_keys(session: Session, job_id: str, revision: int) -> dict[int, str]:
    """Storage key of every line of the revision that has a unit, by line index."""
    rows = session.execute(select(JobUnit.index, JobUnit.key).where(
        JobUnit.job_id == job_id, JobUnit.revision == revision))
    return {index: key for index, key in rows}


def revision_units(session: Session, job_id: str, revision: int) -> list[JobUnit]:
    """The units a revision's lines sound like, by line (none once retention dropped them)."""
    return list(session.scalars(select(JobUnit).where(
        JobUnit.job_id == job_id, JobUnit.revision == revision).order_by(JobUnit.index)))


def lines_rendered_in(session: Session, job_id: str, revision: int) -> list[int]:
    """The lines of the revision whose units it rendered itself (not carried over)."""
    return list(session.scalars(select(JobUnit.index).where(
        JobUnit.job_id == job_id, JobUnit.revision == revision,
        JobUnit.rendered_in == revision).order_by(JobUnit.index)))


def add_storage_purge(session: Session, prefix: str) -> int:
    """Note that every stored object under `prefix` must go; the purge's id."""
    purge = StoragePurge(prefix=prefix, attempts=0, next_attempt_at=utcnow())
    session.add(purge)
    session.flush()
    return purge.id


def due_storage_purges(session: Session, limit: int = 100) -> list[int]:
    return list(session.scalars(select(StoragePurge.id)
                                .where(StoragePurge.next_attempt_at <= utcnow())
                                .order_by(StoragePurge.next_attempt_at).limit(limit)))


def claim_storage_purge(session: Session, purge_id: int, retry_seconds: float) -> str | None:
    """Take a due purge, its next try `retry_seconds` away should this one fail; its prefix."""
    now = utcnow()
    result = session.execute(
        update(StoragePurge)
        .where(StoragePurge.id == purge_id, StoragePurge.next_attempt_at <= now)
        .values(next_attempt_at=now + timedelta(seconds=retry_seconds),
                attempts=StoragePurge.attempts + 1))
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return session.scalar(select(StoragePurge.prefix).where(StoragePurge.id == purge_id))


def storage_purge_done(session: Session, purge_id: int) -> None:
    session.execute(delete(StoragePurge).where(StoragePurge.id == purge_id))


def storage_purge_failed(session: Session, purge_id: int, error: str) -> None:
    session.execute(update(StoragePurge).where(StoragePurge.id == purge_id)
                    .values(last_error=error))


def pending_storage_purges(session: Session) -> list[StoragePurge]:
    return list(session.scalars(select(StoragePurge).order_by(StoragePurge.id)))


def record_unit(session: Session, job_id: str, revision: int, index: int, key: str,
                units_total: int, seed: int | None = None) -> bool:
    """Record `key` as the unit of a line of a running job's revision; raise progress to the
    lines done.

    False when it is not recorded: the job no longer runs that revision (finished, canceled,
    deleted, revised), or the line has a unit already (the first recorded take counts); the
    caller then removes the take it wrote. Progress only ever goes up, even when two workers
    record lines at once.
    """
    insert_fn = _insert(session)
    running = select(Job.id).where(Job.id == job_id, Job.status == "running",
                                   Job.revision == revision, Job.deleted_at.is_(None))
    # The write comes first so that SQLite takes its write lock before anything is read.
    inserted = session.execute(
        insert_fn(JobUnit)
        .from_select(["job_id", "revision", "index", "key", "rendered_in", "seed",
                      "created_at"],
                     select(literal(job_id), literal(revision), literal(index), literal(key),
                            literal(revision), literal(seed, Integer()),
                            literal(utcnow(), UTCDateTime())).where(running.exists()))
        .on_conflict_do_nothing()
        .returning(JobUnit.index)  # rowcount of INSERT ... SELECT is -1 on psycopg
    ).first()
    done = (select(func.count()).select_from(JobUnit)
            .where(JobUnit.job_id == job_id, JobUnit.revision == revision)
            .scalar_subquery())
    raised = case((done > Job.units_done, done), else_=Job.units_done)
    if inserted is None:
        return False
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.deleted_at.is_(None))
        .values(units_done=raised, units_total=units_total,
                progress=cast(raised, Float) / units_total)
    )
    return True


# --- backup and restore (voicereel/backup.py) -------------------------------------------------


def backup_tables() -> list[Table]:
    """Every table of the schema, parents before the rows that point at them."""
    return list(Base.metadata.sorted_tables)


def dump_rows(session: Session, table: Table) -> Iterator[dict[str, Any]]:
    """The table's rows as plain values (datetimes as ISO 8601 text), in key order."""
    for row in session.execute(select(table).order_by(*table.primary_key.columns)).mappings():
        yield {name: value.isoformat() if isinstance(value, datetime) else value
               for name, value in row.items()}


def schema_revision(session: Session) -> str:
    return str(session.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def holds_data(session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Tenant)))


def erase_everything(session: Session) -> None:
    """Delete every row of every table (restore --force), children first."""
    for table in reversed(backup_tables()):
        session.execute(delete(table))


def load_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert dumped rows as they were (ids included)."""
    timestamps = {c.name for c in table.columns if isinstance(c.type, (UTCDateTime, DateTime))}
    for row in rows:
        for name in timestamps & row.keys():
            if row[name] is not None:
                row[name] = datetime.fromisoformat(row[name])
    if rows:
        session.execute(table.insert(), rows)


def after_restore(session: Session) -> int:
    """Make restored rows usable: id sequences past the restored ids (PostgreSQL), and jobs
    that were rendering when the backup was taken queued again (their units kept), so that the
    sweep runs them. Returns how many jobs were queued again."""
    if session.get_bind().dialect.name == "postgresql":
        for table in backup_tables():
            for column in table.primary_key.columns:
                if column.autoincrement is True and isinstance(column.type, Integer):
                    session.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'),"
                        f" COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"))
    result = session.execute(
        update(Job).where(Job.status == "running", Job.deleted_at.is_(None))  # not direct renders
        .values(status="queued", lease_owner=None, lease_expires_at=None, retry_at=None))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- audit ------------------------------------------------------------------------------------


def add_audit_event(session: Session, event: AuditEvent) -> None:
    session.add(event)
    session.flush()


def list_audit_events(session: Session, tenant_id: str, limit: int, cursor: str | None,
                      action: str | None, since: datetime | None) -> Page:
    """The tenant's audit rows, newest first (by id: the order they were written)."""
    query = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    if cursor:
        _, last_id = _decode_cursor(cursor)
        if not last_id.isdigit():
            raise BadRequest("cursor is not valid; use next_cursor from the previous page")
        query = query.where(AuditEvent.id < int(last_id))
    if action:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, _encode_cursor(rows[-1].at, str(rows[-1].id)) if more else None)


def delete_audit_events_before(session: Session, cutoff: datetime) -> int:
    result = session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
