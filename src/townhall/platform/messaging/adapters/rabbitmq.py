"""RabbitMQ: a direct exchange per topic, a quorum queue per group and partition with a single
active consumer (so one member at a time handles a partition, in order), prefetch as QoS,
publisher confirms, and a dead-letter exchange feeding one dead-letter queue per group.
Membership is a heartbeat on a fanout exchange per group.

Reconnection is ours, not aio_pika's robust connection: a lost connection (closed by the
broker, a broker restart) closes every channel on it, so each reader's lease ends (`renew`
says False) and the engine acquires the partition again on a new channel; publishing,
heartbeats and declarations open the connection again on first use. `ping` makes a round trip
on the live connection, so /readyz says down while the broker cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from townhall.platform.messaging.transport import BusOptions, ReceivedMessage, strip_query, token

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 30.0  # a confirm lost with its connection must not hold a publisher forever
PING_TIMEOUT = 5.0


def is_open(connection: Any) -> bool:
    """Whether the AMQP connection is up. aio_pika's own `is_closed` turns True only once
    `close()` is called, not when the broker drops the connection: ask the connection below."""
    transport = None if connection is None else connection.transport
    return transport is not None and not connection.is_closed and not transport.connection.is_closed


class RabbitReader:
    def __init__(self, channel: Any, queue: Any) -> None:
        self.channel = channel
        self.queue = queue
        self.inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.tag: str | None = None
        # The AMQP delivery tags fetched and not yet covered by an ack, in the order the broker
        # sent them (one consumer per channel, so tags only grow), and those among them already
        # acked on their own because an earlier one was still being handled.
        self.outstanding: deque[int] = deque()
        self.acked_alone: set[int] = set()

    async def start(self) -> None:
        self.tag = await self.queue.consume(self.inbox.put)

    async def fetch(self, count: int, wait: float) -> list[ReceivedMessage]:
        try:
            first = await asyncio.wait_for(self.inbox.get(), wait)
        except TimeoutError:
            return []
        got = [first]
        while len(got) < count and not self.inbox.empty():
            got.append(self.inbox.get_nowait())
        self.outstanding.extend(m.delivery_tag for m in got if m.delivery_tag is not None)
        return [self._received(message) for message in got]

    @staticmethod
    def _received(message: AbstractIncomingMessage) -> ReceivedMessage:
        count = message.headers.get("x-delivery-count")
        previous = count if isinstance(count, int) else 0
        return ReceivedMessage(message.body, message, str(message.delivery_tag), previous)

    batch_acks = True

    async def ack(self, received: ReceivedMessage) -> None:
        await self.ack_many([received])

    async def ack_many(self, batch: Sequence[ReceivedMessage]) -> None:
        """One `multiple` ack for the run of handled messages at the head of the channel (the
        usual case: one frame for the whole batch); a message handled while an earlier one is
        still in hand (a retry waiting out its backoff) is acked on its own, so it is never
        held back."""
        by_tag = {received.ref.delivery_tag: received for received in batch}
        head: ReceivedMessage | None = None
        outstanding, acked_alone = self.outstanding, self.acked_alone
        while outstanding and (outstanding[0] in by_tag or outstanding[0] in acked_alone):
            tag = outstanding.popleft()
            if tag in acked_alone:
                acked_alone.discard(tag)
            else:
                head = by_tag.pop(tag)
        if head is not None:
            await head.ref.ack(multiple=True)
        for tag, received in by_tag.items():
            await received.ref.ack()  # one frame out each, no round trip
            acked_alone.add(tag)

    async def renew(self) -> bool:
        return not self.channel.is_closed

    async def release(self, unfinished: Sequence[ReceivedMessage]) -> None:
        # Closing the channel returns every unacked message (in order) and hands the single
        # active consumer role to the next member.
        if not self.channel.is_closed:
            await self.channel.close()


class RabbitTransport:
    def __init__(self, url: str, options: BusOptions) -> None:
        self.url = strip_query(url)
        self.options = options
        self.prefix = options.prefix
        # Shown by `rabbitmqctl list_connections client_properties` and the management UI.
        self.connection_name = options.connection_name
        self.connection: Any = None
        self.channel: Any = None  # declarations and publishing, with publisher confirms
        self.dlx: Any = None
        self._opening = asyncio.Lock()
        # Queues unused this long (seconds) delete themselves; tests set it, production not.
        expires = options.extra.get("queue_expires")
        self.expires = {"x-expires": int(float(expires) * 1000)} if expires else {}
        self.exchanges: dict[str, Any] = {}
        self.declared: set[str] = set()
        self.declared_exchanges: set[str] = set()
        self.seen: dict[tuple[str, str], dict[str, float]] = {}
        self.heartbeats: dict[tuple[str, str, str], Any] = {}

    @classmethod
    async def open(cls, url: str, options: BusOptions) -> RabbitTransport:
        transport = cls(url, options)
        await transport._channel()
        return transport

    async def _channel(self) -> Any:
        """The publishing channel, on a live connection: both are opened again when lost."""
        channel = self.channel
        if channel is not None and not channel.is_closed and is_open(self.connection):
            return channel
        async with self._opening:
            if not is_open(self.connection):
                if self.connection is not None:
                    log.warning("RabbitMQ connection %r lost; reconnecting", self.connection_name)
                    with contextlib.suppress(Exception):
                        await self.connection.close()
                self.channel = None  # channels die with their connection
                self.connection = await aio_pika.connect(
                    self.url,
                    client_properties={"connection_name": self.connection_name},
                    timeout=CONNECT_TIMEOUT,
                )
            if self.channel is None or self.channel.is_closed:
                # Exchange handles belong to the channel they were declared on.
                self.exchanges.clear()
                self.channel = await self.connection.channel(publisher_confirms=True)
                self.dlx = await self.channel.declare_exchange(
                    f"{self.prefix}.dlx", aio_pika.ExchangeType.DIRECT, durable=True
                )
            return self.channel

    async def _connection(self) -> Any:
        await self._channel()
        return self.connection

    def queue_name(self, topic: str, group: str, partition: int | str) -> str:
        return f"{self.prefix}.{token(topic)}.{token(group)}.{partition}"

    async def _exchange(self, topic: str) -> Any:
        channel = await self._channel()
        exchange = self.exchanges.get(topic)
        if exchange is None:
            exchange = await channel.declare_exchange(
                f"{self.prefix}.bus.{token(topic)}", aio_pika.ExchangeType.DIRECT, durable=True
            )
            self.exchanges[topic] = exchange
            self.declared_exchanges.add(exchange.name)
        return exchange

    async def publish(self, topic: str, partition: int, body: bytes) -> None:
        exchange = await self._exchange(topic)
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, routing_key=str(partition), timeout=PUBLISH_TIMEOUT)

    async def ensure_group(self, topic: str, group: str) -> None:
        exchange = await self._exchange(topic)
        channel = await self._channel()
        dead_key = f"{token(topic)}.{token(group)}"
        dlq = await channel.declare_queue(
            self.queue_name(topic, group, "dlq"),
            durable=True,
            arguments={"x-queue-type": "quorum", **self.expires},
        )
        await dlq.bind(self.dlx, routing_key=dead_key)
        self.declared.add(dlq.name)
        for partition in range(self.options.partitions):
            queue = await channel.declare_queue(
                self.queue_name(topic, group, partition),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-single-active-consumer": True,
                    "x-dead-letter-exchange": f"{self.prefix}.dlx",
                    "x-dead-letter-routing-key": dead_key,
                    **self.expires,
                },
            )
            await queue.bind(exchange, routing_key=str(partition))
            self.declared.add(queue.name)

    async def acquire(
        self, topic: str, group: str, partition: int, member: str, prefetch: int
    ) -> RabbitReader | None:
        channel = await (await self._connection()).channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(self.queue_name(topic, group, partition), ensure=False)
        reader = RabbitReader(channel, queue)
        await reader.start()
        return reader

    async def heartbeat(self, topic: str, group: str, member: str) -> list[str]:
        seen = self.seen.setdefault((topic, group), {})
        name = f"{self.prefix}.members.{token(topic)}.{token(group)}"
        beat = self.heartbeats.get((topic, group, member))
        if beat is None or beat[0].is_closed:  # new, or lost with its connection
            channel = await (await self._connection()).channel()
            exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT)
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange)

            async def on_beat(message: AbstractIncomingMessage) -> None:
                seen[message.body.decode()] = time.monotonic()

            await queue.consume(on_beat, no_ack=True)
            self.heartbeats[(topic, group, member)] = (channel, exchange)
        _, exchange = self.heartbeats[(topic, group, member)]
        await exchange.publish(aio_pika.Message(member.encode()), routing_key="")
        now = time.monotonic()
        seen[member] = now
        return sorted(m for m, at in seen.items() if at > now - self.options.lease_ttl)

    async def leave(self, topic: str, group: str, member: str) -> None:
        beat = self.heartbeats.pop((topic, group, member), None)
        if beat is not None and not beat[0].is_closed:
            await beat[0].close()
        self.seen.get((topic, group), {}).pop(member, None)

    async def add_dead(self, topic: str, group: str, record: bytes) -> None:
        message = aio_pika.Message(
            record,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=json.loads(record)["id"],
        )
        await self._channel()
        await self.dlx.publish(
            message, routing_key=f"{token(topic)}.{token(group)}", timeout=PUBLISH_TIMEOUT
        )

    async def _drain_dead(self, topic: str, group: str, ids: set[str] | None) -> list[bytes]:
        """Read the whole dead-letter queue; ack (remove) those in `ids`; the rest go back
        when the channel closes."""
        channel = await (await self._connection()).channel()
        try:
            queue = await channel.get_queue(self.queue_name(topic, group, "dlq"), ensure=False)
            records = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                if ids is None:
                    records.append(message.body)
                elif message.message_id in ids:
                    await message.ack()
                    records.append(message.body)
            return records
        finally:
            await channel.close()

    async def list_dead(self, topic: str, group: str) -> list[bytes]:
        return await self._drain_dead(topic, group, None)

    async def take_dead(self, topic: str, group: str, ids: set[str]) -> list[bytes]:
        return await self._drain_dead(topic, group, ids)

    async def lag(self, topic: str, group: str) -> int | None:
        channel = await self._channel()
        total = 0
        for partition in range(self.options.partitions):
            queue = await channel.declare_queue(
                self.queue_name(topic, group, partition), passive=True
            )
            total += queue.declaration_result.message_count or 0
        return total

    async def ping(self) -> None:
        """A round trip to the broker on the live connection (reconnecting if it was lost);
        raises while the broker cannot be reached."""

        async def round_trip() -> None:
            channel = await self._channel()
            await channel.declare_exchange(f"{self.prefix}.dlx", passive=True)

        await asyncio.wait_for(round_trip(), PING_TIMEOUT)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def delete_everything(self) -> None:
        """Delete the queues and exchanges this bus declared (tests and benchmarks)."""
        channel = await self._channel()
        for name in self.declared:
            await channel.queue_delete(name)
        for name in self.declared_exchanges:
            await channel.exchange_delete(name)
        await channel.exchange_delete(f"{self.prefix}.dlx")
