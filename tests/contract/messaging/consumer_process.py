"""A consumer run as a real process by the contract suite (so it can be SIGKILLed).

usage: python consumer_process.py URL TOPIC GROUP LOGFILE DELAY
Appends "start <id>" / "done <id>" lines to LOGFILE.
"""

from __future__ import annotations

import asyncio
import sys

from townhall.platform.messaging import Envelope, connect


async def main(url: str, topic: str, group: str, logfile: str, delay: float) -> None:
    bus = await connect(url)
    with open(logfile, "a", buffering=1) as log:  # noqa: ASYNC230 - a test helper

        async def handle(envelope: Envelope) -> None:
            log.write(f"start {envelope.payload['n']}\n")
            await asyncio.sleep(delay)
            log.write(f"done {envelope.payload['n']}\n")

        await bus.subscribe(topic, group, handle, prefetch=10)
        log.write("ready\n")
        await asyncio.Event().wait()


if __name__ == "__main__":
    url, topic, group, logfile, delay = sys.argv[1:]
    asyncio.run(main(url, topic, group, logfile, float(delay)))
