"""A bounded in-process cache whose entries expire a fixed time after they were put."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from townhall.platform.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `max_entries` values, each returned for `ttl` after it was put and then
    forgotten. When full, putting a new key drops the oldest entry first. For values that may
    be a little stale, never wrong in a way that matters: the cache of each process sees no
    change made elsewhere before its entry expires."""

    def __init__(self, clock: Clock, *, ttl: timedelta, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[K, tuple[datetime, V]] = {}  # insertion order: oldest first

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock.now() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        self._entries.pop(key, None)  # a refreshed key moves to the end: it is the newest
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._clock.now() + self._ttl, value)

    def __len__(self) -> int:
        return len(self._entries)
