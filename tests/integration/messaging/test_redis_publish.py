"""Redis Streams publishing: concurrent publishes share a pipeline, each gets its own answer."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from townhall.platform.messaging import Envelope
from townhall.platform.messaging.engine import partition_of

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def bus(redis_bus):
    return await redis_bus("pipe", "partitions=2")


def keyed(n: int, partition: int) -> Envelope:
    key = next(f"k{i}" for i in range(1000) if partition_of(f"k{i}", 2) == partition)
    return Envelope(type="test.Happened", key=key, payload={"n": n})


async def test_concurrent_publishes_land_in_call_order_and_a_refused_one_fails_alone(bus):
    transport = bus.transport
    await transport.ensure_group("orders", "billing")
    broken = transport.stream("orders", 1)
    await transport.client.delete(broken)
    await transport.client.set(broken, "not a stream")  # XADD on it answers WRONGTYPE

    results = await asyncio.gather(
        *(bus.publish("orders", keyed(n, partition=n % 2)) for n in range(40)),
        return_exceptions=True,
    )

    for n, result in enumerate(results):
        if n % 2:
            assert isinstance(result, ResponseError), f"publish {n} went to the broken stream"
        else:
            assert result is None, f"publish {n} failed: {result!r}"
    entries = await transport.client.xrange(transport.stream("orders", 0))
    landed = [Envelope.from_bytes(fields[b"b"]).payload["n"] for _, fields in entries]
    assert landed == list(range(0, 40, 2))


async def test_a_publish_returns_only_once_redis_has_the_message(bus):
    await bus.transport.ensure_group("orders", "billing")
    await bus.publish("orders", keyed(7, partition=0))
    assert await bus.transport.client.xlen(bus.transport.stream("orders", 0)) == 1
