"""INTERIM (replaced by the storage branch): objects as files under a directory."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from townhall.uploads.ports import Area, ObjectMissing

CHUNK = 256 * 1024


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        for area in Area:
            (root / area.value).mkdir(parents=True, exist_ok=True)

    def _path(self, area: Area, key: str) -> Path:
        return self.root / area.value / key

    async def put(self, area: Area, key: str, chunks: AsyncIterable[bytes]) -> int:
        temp = self.root / area.value / f".partial-{uuid.uuid4().hex}"
        size = 0
        try:
            with open(temp, "wb") as out:  # noqa: ASYNC230
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
                    size += len(chunk)
            os.replace(temp, self._path(area, key))
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return size

    async def get(
        self, area: Area, key: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            handle = open(self._path(area, key), "rb")  # noqa: ASYNC230
        except FileNotFoundError:
            raise ObjectMissing(f"{area}/{key}") from None
        with handle:
            handle.seek(first)
            left = None if last is None else last - first + 1
            while left is None or left > 0:
                data = await asyncio.to_thread(
                    handle.read, CHUNK if left is None else min(CHUNK, left)
                )
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data

    async def move(self, key: str, source: Area, target: Area) -> None:
        try:
            os.replace(self._path(source, key), self._path(target, key))
        except FileNotFoundError:
            if not self._path(target, key).exists():
                raise ObjectMissing(f"{source}/{key}") from None

    async def delete(self, key: str) -> None:
        for area in Area:
            self._path(area, key).unlink(missing_ok=True)

    async def size(self, area: Area, key: str) -> int | None:
        try:
            return self._path(area, key).stat().st_size
        except FileNotFoundError:
            return None

    async def close(self) -> None:
        return None
