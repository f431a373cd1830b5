"""RabbitMQ: handled messages are acked with one `multiple` ack per run at the head of the
channel, and on their own behind a message still in hand; either way exactly the handled
ones leave the queue, whatever order they finish in."""

from __future__ import annotations

import pytest

from townhall.platform.messaging.adapters.rabbitmq import RabbitReader, RabbitTransport
from townhall.platform.messaging.transport import ReceivedMessage

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def transport(rabbit_bus) -> RabbitTransport:
    bus = await rabbit_bus("acks", "partitions=1&queue_expires=60")
    await bus.transport.ensure_group("jobs", "workers")
    return bus.transport


async def fetch_all(reader: RabbitReader, count: int) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    while len(got) < count:
        batch = await reader.fetch(count - len(got), 5)
        assert batch, f"only {len(got)} of {count} messages arrived"
        got += batch
    return got


async def test_only_the_acked_messages_leave_the_queue_in_any_order(transport):
    for n in range(8):
        await transport.publish("jobs", 0, str(n).encode())
    reader = await transport.acquire("jobs", "workers", 0, "m1", prefetch=20)
    assert reader is not None
    got = await fetch_all(reader, 8)
    assert [message.body for message in got] == [str(n).encode() for n in range(8)]
    # 1 and 3 finish while 0 is still in hand; then 0 and 2 (a run through the alone-acked
    # 1 and 3); then 5 and 6 behind the unfinished 4; 7 is never acked.
    await reader.ack_many([got[1], got[3]])
    await reader.ack_many([got[0], got[2]])
    await reader.ack(got[5])
    await reader.ack_many([got[6]])
    await reader.release([got[4], got[7]])  # closes the channel: the unacked go back

    again = await transport.acquire("jobs", "workers", 0, "m2", prefetch=20)
    assert again is not None
    back = await fetch_all(again, 2)
    assert [message.body for message in back] == [b"4", b"7"]
    assert await again.fetch(10, 0.5) == []  # nothing acked came back
    await again.ack_many(back)
    await again.release([])
    assert await transport.lag("jobs", "workers") == 0
