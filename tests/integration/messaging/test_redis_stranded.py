"""Redis Streams: an entry left pending under a consumer that no longer owns the partition
(its read was served after the new owner's first sweep) is claimed and handled, not lost."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from support.brokers import kill_redis_clients
from support.services import REDIS_URL
from townhall.platform.messaging import Envelope

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def bus(redis_bus):
    return await redis_bus("strand", "partitions=1&lease_ttl=0.5")


async def test_an_entry_stranded_under_a_former_owner_is_claimed_and_handled(bus):
    handled: list[int] = []
    everything = asyncio.Event()

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.payload["n"])
        if len(handled) >= 3:
            everything.set()

    sub = await bus.subscribe("jobs", group="workers", handler=handle)
    await asyncio.sleep(0.2)  # the member holds the partition and has made its first sweep
    transport = bus.transport
    stream = transport.stream("jobs", 0)
    # A former owner's late read: Redis hands entries to "ghost", which will never ack them.
    # Added and read in one MULTI, so the ghost gets them before the member's blocked read.
    async with transport.client.pipeline(transaction=True) as pipe:
        for n in range(3):
            pipe.xadd(stream, {"b": Envelope(type="t.Job", key="k", payload={"n": n}).to_bytes()})
        pipe.xreadgroup("workers", "ghost", {stream: ">"}, count=3)
        await pipe.execute()
    ghost_took = await transport.client.xpending_range(stream, "workers", "-", "+", 10, "ghost")
    assert len(ghost_took) == 3  # the entries really were stranded under the ghost
    await asyncio.wait_for(everything.wait(), 10)
    assert sorted(handled) == [0, 1, 2]
    await asyncio.sleep(0.3)
    assert await transport.client.xpending_range(stream, "workers", "-", "+", 10) == []
    await sub.stop()


async def test_entries_whose_read_reply_was_lost_with_the_connection_are_handled(redis_bus):
    """A read served by Redis whose reply died with the connection leaves its entries pending
    under the member itself, where no sweep looks: the member must take them back."""
    name = f"townhall-test-lostread-{uuid.uuid4().hex[:8]}"
    bus = await redis_bus("lostread", f"partitions=1&lease_ttl=0.5&connection_name={name}")
    handled: list[int] = []

    async def handle(envelope: Envelope) -> None:
        handled.append(envelope.payload["n"])

    sub = await bus.subscribe("jobs", group="workers", handler=handle)
    await asyncio.sleep(0.2)
    transport = bus.transport
    stream = transport.stream("jobs", 0)
    # The member's own read, served, its reply never seen: the entries are pending under it.
    async with transport.client.pipeline(transaction=True) as pipe:
        for n in range(3):
            pipe.xadd(stream, {"b": Envelope(type="t.Job", key="k", payload={"n": n}).to_bytes()})
        pipe.xreadgroup("workers", sub.id, {stream: ">"}, count=3)
        await pipe.execute()
    assert await kill_redis_clients(REDIS_URL.split("?", 1)[0], name) > 0
    deadline = asyncio.get_running_loop().time() + 10
    while sorted(set(handled)) != [0, 1, 2]:
        assert asyncio.get_running_loop().time() < deadline, f"handled only {handled}"
        await asyncio.sleep(0.05)
    await sub.stop()
