"""The scan of one upload: its bytes streamed through the scanner and, for a zip, every member
(nested archives' too, within `ArchiveLimits`) scanned in turn; all of it within a timeout.

The verdict: the first INFECTED found wins. An archive past its limits (a zip bomb: too deep,
too many members, too many bytes, too high a ratio) is INFECTED `archive_limits`: it is never
CLEAN, stays in quarantine, and its owner is told why. An archive with a member that cannot be
read (encrypted, or packed by an unsupported method) and nothing infected is FAILED under that
reason (`encrypted_archive`, `unsupported_archive`): it cannot be vouched for, so it is not
served. A corrupt archive is scanned as opaque bytes only (see `archives`). A scan that does
not end within `timeout` raises `ScanError("timeout")`; a scanner's `ScanError` propagates: the
caller retries, then records FAILED.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import IO

from townhall.uploads.archives import ArchiveLimitExceeded, ArchiveLimits, ZipWalk
from townhall.uploads.domain import ScanError, Status, Verdict
from townhall.uploads.ports import Scanner

ZIP = "application/zip"
ARCHIVE_LIMITS = "archive_limits"
# An upload's bytes are kept in memory up to this, on disk past it, while its members are read.
SPOOL_IN_MEMORY = 1024 * 1024
# Writes to the spool go to a thread in batches of this size.
SPOOL_BATCH = 1024 * 1024


class ScanPipeline:
    def __init__(self, scanner: Scanner, limits: ArchiveLimits, timeout: float) -> None:
        self.scanner = scanner
        self.limits = limits
        self.timeout = timeout

    async def verdict(self, chunks: AsyncIterable[bytes], content_type: str) -> Verdict:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._verdict(chunks, content_type)
        except TimeoutError as exc:
            raise ScanError("timeout") from exc

    async def _verdict(self, chunks: AsyncIterable[bytes], content_type: str) -> Verdict:
        if content_type != ZIP:
            return await self.scanner.scan(chunks)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            tee = _Tee(chunks, spool)
            verdict = await self.scanner.scan(tee)
            if verdict.status is not Status.CLEAN:
                return verdict
            await tee.finish()  # a scanner says CLEAN having read it all; this makes sure
            return await self._members(spool)

    async def _members(self, spool: IO[bytes]) -> Verdict:
        spool.seek(0)
        walk = ZipWalk(spool, self.limits)
        members = iter(walk)
        try:
            while (member := await asyncio.to_thread(next, members, None)) is not None:
                _path, chunks = member
                source = _InThread(chunks)
                try:
                    verdict = await self.scanner.scan(source)
                except Exception:
                    # However a scanner wraps what its source raised, a bomb is a bomb.
                    if source.exceeded is not None:
                        return Verdict.infected(ARCHIVE_LIMITS)
                    raise
                if verdict.status is not Status.CLEAN:
                    return verdict
        except ArchiveLimitExceeded:
            return Verdict.infected(ARCHIVE_LIMITS)
        finally:
            try:
                members.close()
            except ValueError:
                pass  # still running in its thread after a timeout; it ends with the spool
        if walk.unreadable:
            return Verdict.failed(walk.unreadable[0][1])
        return Verdict.clean()


class _Tee:
    """The upload's chunks, passed on to the scanner and copied to the spool on the way."""

    def __init__(self, chunks: AsyncIterable[bytes], spool: IO[bytes]) -> None:
        self._chunks = chunks.__aiter__()
        self._spool = spool
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._done = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._flush()
            self._done = True
            raise
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= SPOOL_BATCH:
            await self._flush()
        return chunk

    async def finish(self) -> None:
        async for _ in self:
            pass

    async def _flush(self) -> None:
        pending, self._pending, self._pending_size = self._pending, [], 0
        if pending:
            await asyncio.to_thread(self._spool.writelines, pending)


class _InThread:
    """A blocking iterator of chunks (a member unpacking) read in a thread, one chunk at a
    time; remembers an archive limit it raised."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.exceeded: ArchiveLimitExceeded | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await asyncio.to_thread(next, self._chunks, None)
        except ArchiveLimitExceeded as exc:
            self.exceeded = exc
            raise
        if chunk is None:
            raise StopAsyncIteration
        return chunk
