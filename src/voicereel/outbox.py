"""Work a commit promises and a later step does: webhook deliveries and file purges.

Both are rows written in the transaction that makes them necessary (a job's final state, a
deletion), so a crash between the commit and the work loses nothing: `sweep`, run by every
runner's sweep loop, does whatever is due. A deleted job or speaker is hidden at once; its files
are removed right after the commit (`purge`) and, if the store fails, again every
`storage_purge_retry_seconds` until they are gone.
"""

from __future__ import annotations

import logging

from voicereel import webhooks
from voicereel.db import repo
from voicereel.services import Services

log = logging.getLogger(__name__)


def sweep(services: Services) -> None:
    """Hand due webhook deliveries to the pool and retry due file purges."""
    webhooks.send_due(services)
    purge_due(services)


def remove(services: Services, prefix: str) -> None:
    """Remove the files under `prefix` now, or, if the store fails, with the sweep later."""
    with services.db.session() as session:
        purge_id = repo.add_storage_purge(session, prefix)
    purge(services, purge_id)


def purge(services: Services, purge_id: int) -> bool:
    """Remove the purge's files if it is due and nobody else does; True once they are gone."""
    with services.db.session() as session:
        prefix = repo.claim_storage_purge(session, purge_id,
                                          services.settings.storage_purge_retry_seconds)
    if prefix is None:
        return False
    try:
        services.storage.delete_prefix(prefix)
    except Exception as exc:  # any store failure: the row stays and the sweep tries again
        log.warning("could not remove the files under %s (will retry): %s", prefix, exc)
        with services.db.session() as session:
            repo.storage_purge_failed(session, purge_id, f"{type(exc).__name__}: {exc}"[:500])
        return False
    with services.db.session() as session:
        repo.storage_purge_done(session, purge_id)
    return True


def purge_due(services: Services, limit: int = 100) -> int:
    """Retry due purges, stopping at the first failure (the store is likely down); done count."""
    with services.db.session() as session:
        due = repo.due_storage_purges(session, limit)
    done = 0
    for purge_id in due:
        if not purge(services, purge_id):
            break
        done += 1
    return done
