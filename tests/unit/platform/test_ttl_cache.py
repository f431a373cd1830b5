"""TtlCache: values expire a fixed time after they were put; when full, the oldest goes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from townhall.platform.clock import FrozenClock
from townhall.platform.ttl_cache import TtlCache


def test_a_value_is_returned_until_its_time_is_up_then_forgotten() -> None:
    clock = FrozenClock()
    cache: TtlCache[str, int] = TtlCache(clock, ttl=timedelta(seconds=30), max_entries=10)
    cache.put("a", 1)
    clock.advance(seconds=29.999)
    assert cache.get("a") == 1
    clock.advance(seconds=0.001)
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.get("never put") is None


def test_putting_again_replaces_the_value_and_restarts_its_time() -> None:
    clock = FrozenClock()
    cache: TtlCache[str, int] = TtlCache(clock, ttl=timedelta(seconds=10), max_entries=10)
    cache.put("a", 1)
    clock.advance(seconds=8)
    cache.put("a", 2)
    clock.advance(seconds=8)
    assert cache.get("a") == 2


def test_when_full_the_entry_put_longest_ago_is_dropped() -> None:
    clock = FrozenClock()
    cache: TtlCache[str, int] = TtlCache(clock, ttl=timedelta(seconds=10), max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # refreshed: now "b" is the oldest
    cache.put("c", 4)
    assert len(cache) == 2
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(FrozenClock(), ttl=timedelta(seconds=1), max_entries=0)
