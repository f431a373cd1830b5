"""The in-process bus hands envelopes over as they are: no JSON on the way."""

from __future__ import annotations

import asyncio

from townhall.platform.messaging import Envelope, connect


async def test_the_in_process_bus_delivers_the_published_envelope_with_its_attempt_header():
    bus = await connect("memory://?prefix=unit-memory-handover")
    published = Envelope(type="test.Happened", key="k", payload={"when": object()})
    received: asyncio.Queue[Envelope] = asyncio.Queue()
    sub = await bus.subscribe("orders", "billing", received.put)

    await bus.publish("orders", published)
    got = await asyncio.wait_for(received.get(), 5)

    assert got.payload is published.payload, "handed over, not copied through JSON"
    assert (got.id, got.type, got.key, got.occurred_at) == (
        published.id,
        published.type,
        published.key,
        published.occurred_at,
    )
    assert got.headers == {"attempt": "1"} and published.headers == {}
    await sub.stop()
    await bus.close()


async def test_bytes_published_on_the_in_process_transport_are_still_decoded():
    bus = await connect("memory://?prefix=unit-memory-bytes&partitions=1")
    received: asyncio.Queue[Envelope] = asyncio.Queue()
    sub = await bus.subscribe("orders", "billing", received.put)
    wire = Envelope(type="test.Happened", key="k", payload={"n": 1})

    await bus.transport.publish("orders", 0, wire.to_bytes())
    got = await asyncio.wait_for(received.get(), 5)

    assert got.with_headers(attempt="1") == got and got.payload == {"n": 1}
    assert got.id == wire.id
    await sub.stop()
    await bus.close()
