"""Retention: history older than `TOWNHALL_CHAT_RETENTION_DAYS` is deleted, once an hour (or
sooner for short retentions), by every process that runs chat (a second deletes nothing)."""

from __future__ import annotations

import logging
from datetime import timedelta

from townhall.chat.service import ChatService
from townhall.platform.periodic import Periodic

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, service: ChatService, days: float) -> None:
        self._service = service
        self.keep = timedelta(days=days)
        self.every = min(3600.0, max(1.0, self.keep.total_seconds() / 10))
        self._loop = Periodic("chat.retention", self.every, self._prune, first_at_once=True)

    async def start(self) -> None:
        if self.keep > timedelta(0):
            await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _prune(self) -> None:
        pruned = await self._service.prune(self.keep)
        if pruned:
            log.info("chat: %d messages past retention deleted", pruned)
