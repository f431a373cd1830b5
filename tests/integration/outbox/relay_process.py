"""A relay run as a real process by the outbox tests (so it can be SIGKILLed mid-batch).

usage: python relay_process.py DATABASE_URL BUS_URL MARKER
Publishes slowly (each publish waits 20 ms) and touches MARKER after its first publish.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from townhall.platform.db import Database
from townhall.platform.messaging import Envelope, connect
from townhall.platform.outbox import OutboxRelay


async def main(database_url: str, bus_url: str, marker: str) -> None:
    bus = await connect(bus_url)
    real_publish = bus.publish

    async def slow_publish(topic: str, envelope: Envelope) -> None:
        await real_publish(topic, envelope)
        Path(marker).touch()  # noqa: ASYNC240 - a test helper
        await asyncio.sleep(0.02)

    bus.publish = slow_publish  # type: ignore[method-assign]
    relay = OutboxRelay(Database(database_url), bus, batch_size=1000)
    await relay.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
