"""A consistent-hash ring with virtual nodes: which message-store shard owns a room.

Each shard sits at `vnodes` points on a 64-bit circle (blake2b of "shard#i", stable across
processes and Python versions, unlike `hash()`); a key belongs to the first point clockwise of
its own hash. Adding a shard to N moves about 1/(N+1) of the keys, all to the new shard;
removing one moves only the keys it owned.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from hashlib import blake2b

DEFAULT_VNODES = 256


def stable_hash(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, shards: Iterable[str] = (), *, vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        self.vnodes = vnodes
        self._shards: set[str] = set()
        self._points: list[tuple[int, str]] = []  # sorted; ties broken by shard name
        self._hashes: list[int] = []
        for shard in shards:
            self.add(shard)

    @property
    def shards(self) -> frozenset[str]:
        return frozenset(self._shards)

    def __len__(self) -> int:
        return len(self._shards)

    def __contains__(self, shard: object) -> bool:
        return shard in self._shards

    def add(self, shard: str) -> None:
        if not shard:
            raise ValueError("a shard needs a name")
        if shard in self._shards:
            return
        self._shards.add(shard)
        self._points.extend((stable_hash(f"{shard}#{i}"), shard) for i in range(self.vnodes))
        self._rebuild()

    def remove(self, shard: str) -> None:
        if shard not in self._shards:
            raise KeyError(shard)
        self._shards.discard(shard)
        self._points = [point for point in self._points if point[1] != shard]
        self._rebuild()

    def _rebuild(self) -> None:
        self._points.sort()
        self._hashes = [point[0] for point in self._points]

    def shard_for(self, key: str) -> str:
        """The shard that owns `key` (a room id)."""
        if not self._points:
            raise LookupError("the ring has no shards")
        index = bisect_right(self._hashes, stable_hash(key)) % len(self._points)
        return self._points[index][1]

    def copy(self) -> HashRing:
        return HashRing(self._shards, vnodes=self.vnodes)
