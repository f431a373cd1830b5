"""INTERIM (replaced by the scanning branch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

from townhall.uploads.archives import ArchiveLimits
from townhall.uploads.domain import ScanError, Verdict
from townhall.uploads.ports import Scanner


class ScanPipeline:
    def __init__(self, scanner: Scanner, limits: ArchiveLimits, timeout: float) -> None:
        self.scanner, self.limits, self.timeout = scanner, limits, timeout

    async def verdict(self, chunks: AsyncIterable[bytes], content_type: str) -> Verdict:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.scanner.scan(chunks)
        except TimeoutError:
            raise ScanError("timeout") from None
