"""One process reading many groups on Redis: every (group, partition) blocks on a connection of
its own, so a process running every module (about 30 groups on 4 partitions) holds more than
redis-py's default pool of 100. Each reader must still get its connection."""

from __future__ import annotations

import asyncio

import pytest

from support.notifications import eventually
from townhall.platform.messaging import Envelope
from townhall.platform.messaging.engine import partition_of

pytestmark = pytest.mark.timeout(60)

GROUPS = 30
PARTITIONS = 4


async def test_thirty_groups_on_four_partitions_each_get_every_message(redis_bus):
    bus = await redis_bus("many", f"partitions={PARTITIONS}&backoff_base=0.05&backoff_cap=0.2")
    seen: dict[str, set[int]] = {f"g{n}": set() for n in range(GROUPS)}
    for group in seen:

        async def handle(envelope: Envelope, group: str = group) -> None:
            seen[group].add(envelope.payload["n"])

        await bus.subscribe("events", group, handle)
    await asyncio.sleep(0.5)  # every reader is blocked on its stream
    keys = [
        next(f"k{i}" for i in range(1000) if partition_of(f"k{i}", PARTITIONS) == p)
        for p in range(PARTITIONS)
    ]
    for n in range(2 * PARTITIONS):
        await bus.publish(
            "events", Envelope(type="test.Happened", key=keys[n % PARTITIONS], payload={"n": n})
        )

    everything = set(range(2 * PARTITIONS))

    async def all_handled() -> bool:
        return all(got == everything for got in seen.values())

    await eventually(all_handled, within=20)
