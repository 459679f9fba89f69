"""Per-key rate limits: requests per minute (fixed one-minute windows) and concurrent jobs.

Request counters live in Redis when one is configured (`rate_limit_redis_url`, or the broker
of the distributed runner), so that every API process shares them; otherwise in this process.
Concurrent jobs are counted from the jobs table, which every process shares already; a
`/v1/audio/speech` render counts as a job while it runs.
Headers follow the IETF RateLimit header fields draft: `RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset` (seconds until the window resets), and `Retry-After`
on a 429.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from sqlalchemy.orm import Session

from voicereel.db import repo
from voicereel.db.tables import ApiKey
from voicereel.errors import RateLimited
from voicereel.settings import Settings

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
# a client told to come back when a job slot frees gets this hint; jobs have no fixed end
JOB_SLOT_RETRY_SECONDS = 5


class Counter(Protocol):
    """Counts hits of a key in the current window; returns the count including this hit."""

    blocking: bool  # whether a hit waits on the network (then it runs off the event loop)

    def hit(self, key: str, window: int) -> int: ...


class MemoryCounter:
    """Counters of this process only (a single API process, or tests)."""

    blocking = False

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window: int) -> int:
        with self._lock:
            for old in [k for k in self._counts if k[1] < window]:
                del self._counts[old]
            count = self._counts.get((key, window), 0) + 1
            self._counts[(key, window)] = count
            return count


class RedisCounter:
    """Counters shared by every API process through Redis (INCR + EXPIRE per window)."""

    blocking = True

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def hit(self, key: str, window: int) -> int:
        name = f"voicereel:rl:{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 2 * WINDOW_SECONDS)
        count, _ = pipe.execute()
        return int(count)


def make_counter(settings: Settings) -> Counter:
    url = settings.resolved_rate_limit_redis_url
    return RedisCounter(url) if url else MemoryCounter()


class RateLimiter:
    """Applies the per-minute request limit of a key (its own, or the service default)."""

    def __init__(self, settings: Settings, counter: Counter | None = None) -> None:
        self.settings = settings
        self.counter = counter or make_counter(settings)

    def limit(self, key: ApiKey) -> int:
        """The key's requests per minute (0: unlimited)."""
        return (key.rate_limit_per_minute if key.rate_limit_per_minute is not None
                else self.settings.rate_limit_per_minute)

    def blocks(self, key: ApiKey) -> bool:
        """Whether checking `key` may wait on the network (an unlimited key never does)."""
        return self.counter.blocking and self.limit(key) != 0

    def check(self, key: ApiKey, now: float | None = None) -> dict[str, str]:
        """Count this request; the RateLimit-* headers, or RateLimited past the limit."""
        limit = self.limit(key)
        if limit == 0:
            return {}
        now = time.time() if now is None else now
        window = int(now // WINDOW_SECONDS)
        reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
        try:
            count = self.counter.hit(key.id, window)
        except Exception:
            # A broken counter store must not take the paid API down with it.
            log.exception("rate-limit counter unavailable; request allowed uncounted")
            return {}
        headers = {"RateLimit-Limit": str(limit),
                   "RateLimit-Remaining": str(max(0, limit - count)),
                   "RateLimit-Reset": str(reset)}
        if count > limit:
            raise RateLimited(f"at most {limit} requests per minute for this API key; "
                              f"retry in {reset} s", headers={**headers, "Retry-After": str(reset)})
        return headers


def check_job_slots(session: Session, settings: Settings, key: ApiKey) -> None:
    """Refuse a new job while the key already has its maximum of unfinished jobs.

    Call it first in the transaction that then adds the job: the key stays locked until that
    commits, so parallel requests take the slots one after another and never more than the
    limit, on SQLite and PostgreSQL, from any number of API processes.
    """
    limit = (key.max_concurrent_jobs if key.max_concurrent_jobs is not None
             else settings.max_concurrent_jobs)
    if limit == 0:
        return
    repo.lock_api_key(session, key.id)
    running = repo.count_unfinished_jobs_for_key(session, key.id)
    if running >= limit:
        raise RateLimited(
            f"this API key has {running} unfinished jobs and may have at most {limit}; "
            "wait for one to finish", headers={"Retry-After": str(JOB_SLOT_RETRY_SECONDS)})
