"""Objects kept in process memory: for tests and for a process that keeps no files (nothing
survives it). Same contract as the directory and S3 stores."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from townhall.uploads.ports import Area, ObjectMissing

CHUNK = 64 * 1024


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[tuple[Area, str], bytes] = {}

    async def put(self, area: Area, key: str, chunks: AsyncIterable[bytes]) -> int:
        parts = [chunk async for chunk in chunks]  # raises before anything is kept
        data = b"".join(parts)
        self.objects[(area, key)] = data
        return len(data)

    async def get(
        self, area: Area, key: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        data = self.objects.get((area, key))
        if data is None:
            raise ObjectMissing(f"{area}/{key}")
        end = len(data) if last is None else last + 1
        for start in range(first, end, CHUNK):
            yield data[start : min(start + CHUNK, end)]

    async def move(self, key: str, source: Area, target: Area) -> None:
        data = self.objects.pop((source, key), None)
        if data is not None:
            self.objects[(target, key)] = data
        elif (target, key) not in self.objects:
            raise ObjectMissing(f"{source}/{key}")

    async def delete(self, key: str) -> None:
        for area in Area:
            self.objects.pop((area, key), None)

    async def size(self, area: Area, key: str) -> int | None:
        data = self.objects.get((area, key))
        return None if data is None else len(data)

    async def close(self) -> None:
        self.objects.clear()
