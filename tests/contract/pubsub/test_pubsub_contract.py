"""The PubSub contract, on every adapter against the real server, under a fresh prefix."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from support.services import NATS_URL, REDIS_URL, RUN_ID, require
from townhall.platform.pubsub import Message, connect

pytestmark = pytest.mark.timeout(30)

ADAPTERS = {
    "memory": ("memory://", None),
    "redis": (REDIS_URL, ("Redis", "127.0.0.1", 6379)),
    "nats": (NATS_URL, ("NATS", "127.0.0.1", 4222)),
}
_counter = itertools.count()


@pytest.fixture(params=list(ADAPTERS))
async def url(request) -> AsyncIterator[str]:
    base, service = ADAPTERS[request.param]
    if service:
        require(*service)
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}prefix=t{RUN_ID}p{next(_counter)}&buffer=4"


async def eventually(condition, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_fan_out_order_binary_payloads_unsubscribe_overflow_and_close(url):
    publisher, gateway = await connect(url), await connect(url)
    got: list[Message] = []

    async def record(message: Message) -> None:
        got.append(message)

    # Many channels over one connection, each subscribed with a callback.
    rooms = [f"room.{n}" for n in range(50)]
    for room in rooms:
        await gateway.subscribe(room, record, buffer=1000)
    other = await gateway.subscribe("elsewhere", record)
    payloads = [bytes([n % 256]) * (n % 7) + b"\x00\xff\r\n" for n in range(200)]
    for n, data in enumerate(payloads):
        await publisher.publish(rooms[n % 5], data)
    for room in rooms:
        await publisher.publish(room, b"last")
    await eventually(lambda: len(got) == 250)
    assert all(message.channel != "elsewhere" for message in got)
    for room in rooms[:5]:
        expected = [p for n, p in enumerate(payloads) if rooms[n % 5] == room] + [b"last"]
        assert [m.data for m in got if m.channel == room] == expected  # per-publisher order
    assert all(m.dropped_before == 0 for m in got)
    await other.unsubscribe()

    # Slow subscriber: a buffer of 4 keeps the newest 4 and says how many went before them.
    slow = await gateway.subscribe("busy")
    await gateway.subscribe("busy", record, buffer=1000)
    got.clear()
    for n in range(20):
        await publisher.publish("busy", str(n).encode())
    await eventually(lambda: len(got) == 20)
    iterator = aiter(slow)
    first = await anext(iterator)
    assert (first.data, first.dropped_before, slow.dropped) == (b"16", 16, 16)
    assert [(await anext(iterator)).data for _ in range(3)] == [b"17", b"18", b"19"]

    # Unsubscribe stops delivery; a message after it on the same channel is not seen.
    await slow.unsubscribe()
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)
    got.clear()
    await publisher.publish("elsewhere", b"x")
    await publisher.publish("room.0", b"sentinel")
    await eventually(lambda: any(m.data == b"sentinel" for m in got))
    assert [m.data for m in got] == [b"sentinel"]

    # Close is clean: iterations end, publishing fails, nothing is left running.
    pending = await gateway.subscribe("room.1")
    await gateway.close()
    with pytest.raises(StopAsyncIteration):
        await anext(aiter(pending))
    with pytest.raises(RuntimeError):
        await gateway.publish("room.0", b"late")
    await publisher.ping()
    await publisher.close()
    with pytest.raises(RuntimeError):
        await publisher.ping()
    leftover = [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("pubsub")]
    assert not leftover


async def test_redis_carries_many_channels_on_one_subscriber_connection():
    require("Redis", "127.0.0.1", 6379)
    name = f"townhall-test-pubsub-{RUN_ID}"
    gateway = await connect(f"{REDIS_URL}?prefix=t{RUN_ID}one&connection_name={name}")
    try:
        for n in range(100):
            await gateway.subscribe(f"room.{n}")
        await gateway.ping()
        admin = await connect(f"{REDIS_URL}?prefix=t{RUN_ID}one")
        clients = await admin.client.client_list()  # type: ignore[attr-defined]
        await admin.close()
        # One listener connection with every channel, one pooled for commands.
        assert len([c for c in clients if c.get("name") == name]) == 2
        assert max(int(c["sub"]) for c in clients if c.get("name") == name) == 101
    finally:
        await gateway.close()


async def test_bad_urls_and_channels_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="no pub/sub adapter"):
        await connect("kafka://x")
    with pytest.raises(ValueError, match="buffer"):
        await connect("memory://?buffer=0")
    with pytest.raises(ValueError, match="prefix"):
        await connect("memory://?prefix=a b")
    pubsub = await connect("memory://")
    for channel in ("", "has space", "x" * 201, "caf\u00e9"):
        with pytest.raises(ValueError, match="channel"):
            await pubsub.subscribe(channel)
    await pubsub.close()
