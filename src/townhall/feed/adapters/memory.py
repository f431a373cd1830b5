"""Home timelines in process (the embedded default): a sorted list of post ids per reader."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Collection, Sequence


class _Timeline:
    """Post ids, ascending (a UUIDv7 string's order is its creation order)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.ids: list[str] = []

    def add(self, post_id: str) -> None:
        at = bisect_left(self.ids, post_id)
        if at < len(self.ids) and self.ids[at] == post_id:
            return
        insort(self.ids, post_id)
        if len(self.ids) > self.length:
            del self.ids[: len(self.ids) - self.length]

    def page(self, before: str | None, limit: int) -> list[str]:
        end = len(self.ids) if before is None else bisect_left(self.ids, before)
        return self.ids[max(0, end - limit) : end][::-1]


class MemoryTimelines:
    def __init__(self, length: int = 800) -> None:
        self.length = length
        self._timelines: dict[str, _Timeline] = {}

    async def push(self, entries: Sequence[tuple[str, str]]) -> None:
        for owner, post_id in entries:
            timeline = self._timelines.get(owner)
            if timeline is not None:  # not cached: its first read rebuilds it
                timeline.add(post_id)

    async def page(self, owner: str, before: str | None, limit: int) -> list[str] | None:
        timeline = self._timelines.get(owner)
        return None if timeline is None else timeline.page(before, limit)

    async def size(self, owner: str) -> int | None:
        timeline = self._timelines.get(owner)
        return None if timeline is None else len(timeline.ids)

    async def replace(self, owner: str, post_ids: Sequence[str]) -> None:
        timeline = _Timeline(self.length)
        for post_id in post_ids:
            timeline.add(post_id)
        self._timelines[owner] = timeline

    async def remove(self, owner: str, post_ids: Collection[str]) -> None:
        timeline = self._timelines.get(owner)
        if timeline is not None:
            gone = set(post_ids)
            timeline.ids = [post_id for post_id in timeline.ids if post_id not in gone]

    async def drop(self, owner: str) -> None:
        self._timelines.pop(owner, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._timelines.clear()
