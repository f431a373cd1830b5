"""Objects as files under a directory (the embedded default), and unfinished resumable (tus)
uploads as files growing under another. Every file operation runs in a thread, off the event
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO

from townhall.uploads.ports import Area, ObjectMissing

READ_CHUNK = 256 * 1024
# Chunks are gathered up to this much before a thread writes them: fewer hand-offs for the
# small chunks a request body comes in, and memory bounded to two batches (one being written
# while the next one fills).
WRITE_BATCH = 1024 * 1024
# An upload id, or any name that is one path segment; never `.`-first (temporary files are).
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")


def _check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ValueError(f"not an object key: {key!r}")
    return key


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _write(
    out: IO[bytes], chunks: AsyncIterable[bytes], keep_on_error: bool
) -> tuple[int, BaseException | None]:
    """Write `chunks` to `out` in batches, one batch written in a thread while the next is
    received. Returns the bytes written and the exception the chunks raised, if any; with
    `keep_on_error`, what was received before that is written too."""
    writing: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    batched = size = 0
    failure: BaseException | None = None
    try:
        try:
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BATCH:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(asyncio.to_thread(out.writelines, batch))
                    size += batched
                    batch, batched = [], 0
        except BaseException as error:  # the client went away, the body is too large...
            failure = error
            if not keep_on_error:
                return size, failure
        if writing is not None:
            await writing
            writing = None
        if batch:
            await asyncio.to_thread(out.writelines, batch)
            size += batched
        await asyncio.to_thread(out.flush)
        return size, failure
    finally:
        if writing is not None:  # a thread may still be writing: let it end before anything
            with contextlib.suppress(BaseException):
                await asyncio.shield(writing)


class LocalStorage:
    """Areas are directories `root/quarantine` and `root/clean`; an object is the file named
    by its key. A put writes `.partial-<random>` in the area and renames it to the key only
    when complete (`os.replace`, atomic), so no partial file is ever seen under a key.

    With `fsync` (the default) the file is flushed to disk before the rename and the directory
    after it, so an upload acknowledged survives a power cut; without it a crash may leave an
    empty or short file under the key (the page cache not written yet). It costs little on
    large files (the bytes must reach the disk anyway) and a few milliseconds on small ones.
    """

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root, self.fsync = root, fsync
        for area in Area:
            (root / area.value).mkdir(parents=True, exist_ok=True)

    def _path(self, area: Area, key: str) -> Path:
        return self.root / area.value / _check_key(key)

    async def put(self, area: Area, key: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._path(area, key)
        temp = target.parent / f".partial-{uuid.uuid4().hex}"
        out = await asyncio.to_thread(open, temp, "xb")
        try:
            try:
                size, failure = await _write(out, chunks, keep_on_error=False)
                if failure is not None:
                    raise failure
                if self.fsync:
                    await asyncio.to_thread(os.fsync, out.fileno())
            finally:
                await asyncio.to_thread(out.close)
            await asyncio.to_thread(os.replace, temp, target)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(temp.unlink, missing_ok=True))
            raise
        if self.fsync:
            await asyncio.to_thread(_fsync_directory, target.parent)
        return size

    async def get(
        self, area: Area, key: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        async for chunk in _read(self._path(area, key), first, last, f"{area}/{key}"):
            yield chunk

    async def move(self, key: str, source: Area, target: Area) -> None:
        source_path, target_path = self._path(source, key), self._path(target, key)
        try:
            await asyncio.to_thread(os.replace, source_path, target_path)
        except FileNotFoundError:
            if not await asyncio.to_thread(target_path.exists):
                raise ObjectMissing(f"{source}/{key}") from None
            return
        if self.fsync:
            for directory in {source_path.parent, target_path.parent}:
                await asyncio.to_thread(_fsync_directory, directory)

    async def delete(self, key: str) -> None:
        for area in Area:
            await asyncio.to_thread(self._path(area, key).unlink, missing_ok=True)

    async def size(self, area: Area, key: str) -> int | None:
        return await asyncio.to_thread(_size, self._path(area, key))

    async def close(self) -> None:
        return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


async def _read(path: Path, first: int, last: int | None, name: str) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise ObjectMissing(name) from None
    try:
        if first:
            await asyncio.to_thread(handle.seek, first)
        left = None if last is None else last - first + 1
        while left is None or left > 0:
            want = READ_CHUNK if left is None else min(READ_CHUNK, left)
            data = await asyncio.to_thread(handle.read, want)
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data
    finally:
        await asyncio.to_thread(handle.close)


class UploadLocked(ValueError):
    """Another request is appending to this upload right now (tus: 423 or 409)."""


class LocalPartialUploads:
    """Each unfinished upload is one file, `root/<key>`, appended to in place. Bytes received
    before a client went away are written before its error propagates, so the client resumes
    from the offset `length` tells (tus `HEAD`).

    One append at a time per upload, across processes too: an append holds an exclusive
    `flock` on the file, and a second one meanwhile is refused at once with `UploadLocked` (a
    `ValueError`: the offset it was sent for cannot be trusted). The file's mtime is the
    upload's last activity, which `expired` reads. Nothing else is kept: the tus routes
    record an upload's declared length and metadata themselves.

    `fsync` as for `LocalStorage`: on, the offset a client is told after an append is on disk.
    """

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root, self.fsync = root, fsync
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    async def create(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(_touch, path)
        if self.fsync:
            await asyncio.to_thread(_fsync_directory, self.root)

    async def append(self, key: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        try:
            out = await asyncio.to_thread(open, path, "r+b")  # never creates it
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        try:
            try:
                fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # does not wait
            except BlockingIOError:
                raise UploadLocked(f"upload {key} is being appended to") from None
            length = os.fstat(out.fileno()).st_size
            if offset != length:
                raise ValueError(f"offset {offset} is not the upload's length {length}")
            await asyncio.to_thread(out.seek, length)
            size, failure = await _write(out, chunks, keep_on_error=True)
            if self.fsync:
                await asyncio.to_thread(os.fsync, out.fileno())
            if failure is not None:
                raise failure
            return length + size
        finally:
            await asyncio.shield(asyncio.to_thread(out.close))  # releases the lock

    async def length(self, key: str) -> int | None:
        return await asyncio.to_thread(_size, self._path(key))

    async def read(self, key: str) -> AsyncIterator[bytes]:
        async for chunk in _read(self._path(key), 0, None, key):
            yield chunk

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def expired(self, older_than: datetime) -> list[str]:
        """Keys of the uploads not appended to since `older_than` (an aware time)."""
        return await asyncio.to_thread(_older_than, self.root, older_than.timestamp())


def _touch(path: Path) -> None:
    path.touch(exist_ok=True)


def _older_than(root: Path, timestamp: float) -> list[str]:
    found = []
    for entry in os.scandir(root):
        if not KEY.fullmatch(entry.name):
            continue
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            if entry.stat().st_mtime < timestamp:
                found.append(entry.name)
    return sorted(found)
