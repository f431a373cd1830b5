"""Retention: history older than `TOWNHALL_CHAT_RETENTION_DAYS` is deleted, once an hour (or
sooner for short retentions), by every process that runs chat (a second deletes nothing)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from townhall.chat.service import ChatService

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, service: ChatService, days: float) -> None:
        self._service = service
        self.keep = timedelta(days=days)
        self.every = min(3600.0, max(1.0, self.keep.total_seconds() / 10))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.keep > timedelta(0):
            self._task = asyncio.create_task(self._run(), name="chat.retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                pruned = await self._service.prune(self.keep)
                if pruned:
                    log.info("chat: %d messages past retention deleted", pruned)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chat: pruning history failed; trying again later")
            await asyncio.sleep(self.every)
