"""Releasing held deliveries: those held for the recipient's quiet hours go back on the bus
once the hold ends, checked every `interval` seconds by whichever processes run the loop."""

from __future__ import annotations

import asyncio

from townhall.notifications.ports import Deliveries
from townhall.platform.clock import Clock
from townhall.platform.observability import get_logger

log = get_logger("townhall.notifications")

RELEASE_INTERVAL = 15.0


class HeldReleaser:
    def __init__(
        self, deliveries: Deliveries, clock: Clock, *, interval: float = RELEASE_INTERVAL
    ) -> None:
        self._deliveries = deliveries
        self._clock = clock
        self._interval = interval

    async def release_due(self) -> int:
        """Release what is due now: how many deliveries went back on the bus."""
        return await self._deliveries.release_held(self._clock.now())

    async def run(self) -> None:
        """Release what is due, then again every `interval`, until cancelled. A failed round
        is logged; the held deliveries stay held and the next round tries again."""
        while True:
            try:
                await self.release_due()
            except Exception:
                log.exception("releasing held notifications failed")
            await asyncio.sleep(self._interval)
