"""A process that relays the outbox to the bus and consumes it, run by the contract suite so
that it can be SIGKILLed after its relay published and before its consumer handled anything.

usage: python outbox_process.py BUS_URL DATABASE_URL TOPIC GROUP LOGFILE
Its handler appends "start <n>" to LOGFILE and never returns; "ready" once it runs.
"""

from __future__ import annotations

import asyncio
import sys

from townhall.platform.db import Database
from townhall.platform.messaging import Envelope, connect
from townhall.platform.outbox import OutboxRelay


async def main(bus_url: str, database_url: str, topic: str, group: str, logfile: str) -> None:
    bus = await connect(bus_url)
    with open(logfile, "a", buffering=1) as log:  # noqa: ASYNC230 - a test helper

        async def stuck(envelope: Envelope) -> None:
            log.write(f"start {envelope.payload['n']}\n")
            await asyncio.Event().wait()

        await bus.subscribe(topic, group, stuck, prefetch=1000)
        relay = OutboxRelay(Database(database_url), bus, linger=0, poll_interval=0.1)
        await relay.start()
        log.write("ready\n")
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
