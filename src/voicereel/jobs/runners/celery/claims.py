"""Who renders which line of a job right now: Redis keys with the lease as expiry.

A line is rendered by whoever first takes its claim, `voicereel:unit:<job>:<i>` set with NX,
renewed by the lease heartbeat of the process rendering it. A dead process's claim expires and
the coordinator takes the line; a line message that finds its line done or claimed does
nothing, so the coordinator waits only for lines that live processes render.
"""

from __future__ import annotations

import threading

import redis

from voicereel.jobs.runners.celery.app import BROKER_ERRORS


class LineClaims:
    def __init__(self, broker: redis.Redis, token: str, lease_seconds: int) -> None:
        self.broker = broker
        self.token = token
        self.lease_seconds = lease_seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def key(job_id: str, index: int) -> str:
        return f"voicereel:unit:{job_id}:{index}"

    def take(self, job_id: str, index: int, *, if_broker_down: bool) -> bool:
        """Claim the line; when Redis cannot say, `if_broker_down` decides."""
        key = self.key(job_id, index)
        try:
            taken = bool(self.broker.set(key, self.token, nx=True, ex=self.lease_seconds))
        except BROKER_ERRORS:
            taken = if_broker_down
        if taken:
            with self._lock:
                self._held.add(key)
        return taken

    def release(self, job_id: str, index: int) -> None:
        key = self.key(job_id, index)
        with self._lock:
            self._held.discard(key)
        try:
            if self.broker.get(key) == self.token.encode():
                self.broker.delete(key)
        except BROKER_ERRORS:
            pass  # the claim expires by itself

    def renew(self) -> None:
        """Keep this process's claims alive (called by the lease heartbeat)."""
        with self._lock:
            held = list(self._held)
        try:
            for key in held:
                self.broker.expire(key, self.lease_seconds)
        except BROKER_ERRORS:
            pass  # claims die with a broker restart anyway; the lines are then rendered again
