"""The per-process cache of authenticated keys (`auth.keys.KeyCache`), on a clock of its own."""

from __future__ import annotations

from voicereel.auth.keys import KeyCache
from voicereel.db.tables import ApiKey, Tenant


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _row(n: int) -> tuple[ApiKey, Tenant]:
    return ApiKey(id=f"key_{n}", tenant_id="ten_1"), Tenant(id="ten_1", name="t")


def test_a_key_is_kept_for_the_ttl_then_read_again() -> None:
    clock = Clock()
    cache = KeyCache(ttl_seconds=5.0, max_keys=10, clock=clock)
    key, tenant = _row(1)
    assert cache.get("h1") is None
    cache.put("h1", key, tenant)
    clock.now += 4.9
    assert cache.get("h1") == (key, tenant)
    clock.now += 0.1  # read at 100.0: from 105.0 on it is gone
    assert cache.get("h1") is None
    assert cache.get("h1") is None  # and stays gone until put again


def test_clear_forgets_every_key() -> None:
    cache = KeyCache(ttl_seconds=60.0, max_keys=10, clock=Clock())
    for n in range(3):
        cache.put(f"h{n}", *_row(n))
    cache.clear()
    assert [cache.get(f"h{n}") for n in range(3)] == [None, None, None]


def test_the_oldest_keys_go_past_the_limit() -> None:
    clock = Clock()
    cache = KeyCache(ttl_seconds=60.0, max_keys=2, clock=clock)
    rows = [_row(n) for n in range(3)]
    cache.put("h0", *rows[0])
    cache.put("h1", *rows[1])
    cache.put("h0", *rows[0])  # read again: the newest now
    cache.put("h2", *rows[2])
    assert cache.get("h1") is None
    assert cache.get("h0") == rows[0] and cache.get("h2") == rows[2]


def test_a_ttl_of_zero_keeps_nothing() -> None:
    cache = KeyCache(ttl_seconds=0.0, max_keys=10, clock=Clock())
    cache.put("h1", *_row(1))
    assert cache.get("h1") is None
