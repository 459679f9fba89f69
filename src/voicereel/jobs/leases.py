"""Who runs a job: attempt owners and the heartbeat that keeps their leases alive.

Every attempt at a job is owned by a token unique to that attempt and naming its process
(`host:pid:process-nonce:attempt-nonce`). `repo.claim_job` gives the job to one owner with a
lease of `job_lease_seconds`; while the attempt runs, its process's `LeaseKeeper` renews the
lease every third of that. When the process dies the lease runs out and the sweep dispatches
the job again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from voicereel.db import repo
from voicereel.services import Services

log = logging.getLogger(__name__)


def process_token() -> str:
    """This process, as it appears in lease owners and logs."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Renews, every lease/3 s, the leases of the attempts this process runs.

    `also_renew` is called on every beat too (the Celery runner renews its line claims there).
    """

    def __init__(self, services: Services, also_renew: Callable[[], None] | None = None) -> None:
        self.services = services
        self.token = process_token()
        self.also_renew = also_renew
        self._owners: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def new_owner(self) -> str:
        """A lease owner unique to one attempt."""
        return f"{self.token}:{uuid.uuid4().hex[:8]}"

    @contextmanager
    def holding(self, owner: str) -> Iterator[None]:
        """Keep `owner`'s leases alive while the block runs."""
        with self._lock:
            self._owners.add(owner)
        try:
            yield
        finally:
            with self._lock:
                self._owners.discard(owner)

    def beat(self) -> None:
        lease = self.services.settings.job_lease_seconds
        with self._lock:
            owners = list(self._owners)
        if owners:
            with self.services.db.session() as session:
                repo.extend_leases(session, owners, lease)
        if self.also_renew is not None:
            self.also_renew()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="voicereel-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        interval = self.services.settings.job_lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                self.beat()
            except Exception:
                log.exception("lease heartbeat failed; trying again in %.1f s", interval)
