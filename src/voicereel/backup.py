"""Backup and restore: every table and every stored file, with a manifest of checksums.

A backup is written through the Storage seam, to a folder or to a bucket (`s3://bucket/prefix`):

    manifest.json            format, schema revision, time, tables (rows, sha256), files
    db/<table>.jsonl         one JSON row per line, in key order
    files/<key>              every object the service stores (references, units, results)

It is consistent while the service runs: the tables are read as of one instant
(`Database.snapshot`), then the files are copied; a file that the snapshot names but that was
deleted meanwhile (its job or speaker was deleted after the snapshot) is listed as missing.
Restore goes into a stopped service with an empty database (or `force`): files first, each
checked against its checksum, then the rows in one transaction; jobs that were rendering are
queued again and finish with the units they had.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from voicereel.db import repo
from voicereel.errors import Conflict, NotFound, ValidationFailed
from voicereel.services import Services
from voicereel.storage import storage_at
from voicereel.storage.base import Storage, content_type_for

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def backup_storage(services: Services, location: str) -> Storage:
    """The folder or bucket (`s3://bucket/prefix`) a backup is written to or read from."""
    return storage_at(services.settings, services.signing_secret, location)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backup(services: Services, target: Storage,
           progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Write a backup of the whole service to `target`; its manifest."""
    target.prepare()
    tables: dict[str, dict[str, Any]] = {}
    referenced: set[str] = set()
    with services.db.snapshot() as session:
        revision = repo.schema_revision(session)
        for table in repo.backup_tables():
            rows = list(repo.dump_rows(session, table))
            for row in rows:
                for column in ("reference_key", "key"):
                    if isinstance(row.get(column), str) and table.name in (
                            "speakers", "job_files", "job_units"):
                        referenced.add(row[column])
            body = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n"
                           for row in rows).encode()
            target.put(f"db/{table.name}.jsonl", body, "application/jsonl")
            tables[table.name] = {"rows": len(rows), "sha256": _sha256(body)}
            progress(f"table {table.name}: {len(rows)} rows")
    files: dict[str, dict[str, Any]] = {}
    for key in sorted(set(services.storage.list_keys()) | referenced):
        try:
            data = services.storage.get(key)
        except NotFound:
            continue  # deleted since the snapshot; listed as missing below if it named it
        target.put(f"files/{key}", data, content_type_for(key))
        files[key] = {"size": len(data), "sha256": _sha256(data)}
    progress(f"{len(files)} files")
    manifest = {"format": FORMAT_VERSION, "created_at": datetime.now(UTC).isoformat(),
                "schema_revision": revision, "database": services.db.engine.dialect.name,
                "storage": services.storage.name, "tables": tables, "files": files,
                "missing_files": sorted(referenced - files.keys())}
    target.put(MANIFEST, json.dumps(manifest, indent=2).encode(), "application/json")
    return manifest


def restore(services: Services, source: Storage, *, force: bool = False,
            progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Restore the backup in `source` into this service's database and storage.

    Refuses a non-empty database unless `force` (which erases it), a backup of another schema
    revision (restore with the version that made it, then migrate), and any file or table whose
    checksum does not match. Returns the manifest with `requeued_jobs`.
    """
    try:
        manifest = json.loads(source.get(MANIFEST))
    except NotFound as exc:
        raise NotFound("no backup there: manifest.json is missing") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise ValidationFailed(f"backup format {manifest.get('format')} is not "
                               f"{FORMAT_VERSION}")
    services.db.migrate()
    services.storage.prepare()
    with services.db.session() as session:
        if repo.schema_revision(session) != manifest["schema_revision"]:
            raise Conflict(f"the backup is of schema {manifest['schema_revision']}, this "
                           f"service's is {repo.schema_revision(session)}")
        if repo.holds_data(session) and not force:
            raise Conflict("the database already holds data; restore into an empty one")
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in repo.backup_tables():
        entry = manifest["tables"].get(table.name, {"rows": 0, "sha256": _sha256(b"")})
        body = source.get(f"db/{table.name}.jsonl") if entry["rows"] else b""
        if _sha256(body) != entry["sha256"]:
            raise ValidationFailed(f"table {table.name} does not match its checksum")
        tables[table.name] = [json.loads(line) for line in body.splitlines() if line]
    for key, entry in manifest["files"].items():
        data = source.get(f"files/{key}")
        if _sha256(data) != entry["sha256"]:
            raise ValidationFailed(f"file {key} does not match its checksum")
        services.storage.put(key, data, content_type_for(key))
    progress(f"{len(manifest['files'])} files restored")
    with services.db.session() as session:
        if force:
            repo.erase_everything(session)
        for table in repo.backup_tables():
            repo.load_rows(session, table, tables[table.name])
            progress(f"table {table.name}: {len(tables[table.name])} rows")
        requeued = repo.after_restore(session)
    log.info("restored a backup of %s: %d jobs queued again", manifest["created_at"], requeued)
    return {**manifest, "requeued_jobs": requeued}
