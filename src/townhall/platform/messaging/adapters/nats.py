"""NATS JetStream: one stream per installation, one subject per topic partition, one durable
pull consumer per group and partition. Leases and membership live in two KV buckets whose
entries expire after the lease TTL; unacked messages come back after `ack_wait`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError

from townhall.platform.messaging.transport import BusOptions, ReceivedMessage, strip_query, token

PING_TIMEOUT = 5.0
NAK = b"-NAK"
NAK_TIMEOUT = 5.0


class NatsReader:
    def __init__(self, transport: NatsTransport, sub: Any, lease: str, member: str, revision: int):
        self.t = transport
        self.sub = sub
        self.lease = lease
        self.member = member
        self.revision = revision
        self.pull: asyncio.Future[list[Any]] | None = None
        self.pull_ends = 0.0

    async def fetch(self, count: int, wait: float) -> list[ReceivedMessage]:
        # The pull runs in its own task: if the engine cancels us mid-fetch (it stops the
        # partition), what the server already sent is not dropped but handed back in
        # `release`. The server ends the pull request by this deadline at the latest.
        loop = asyncio.get_running_loop()
        self.pull_ends = max(self.pull_ends, loop.time() + wait)
        self.pull = asyncio.ensure_future(self.sub.fetch(count, timeout=wait))
        try:
            msgs = await asyncio.shield(self.pull)
        except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing came
            msgs = []
        self.pull = None
        return [
            ReceivedMessage(
                msg.data, msg, str(msg.metadata.sequence.stream), msg.metadata.num_delivered - 1
            )
            for msg in msgs
        ]

    batch_acks = True

    async def ack(self, received: ReceivedMessage) -> None:
        await received.ref.ack()

    async def ack_many(self, batch: Sequence[ReceivedMessage]) -> None:
        for received in batch:  # each ack is one frame out, no round trip
            await received.ref.ack()

    async def renew(self) -> bool:
        try:
            self.revision = await self.t.leases.update(
                self.lease, self.member.encode(), last=self.revision
            )
            return True
        except (KeyWrongLastSequenceError, NotFoundError):
            return False

    async def release(self, unfinished: Sequence[ReceivedMessage]) -> None:
        """Hand back every message delivered to us and not handled, and make sure the server
        has taken them back before the lease goes: the next owner must start with them, or
        it would handle later messages of the same key first."""
        returned = [received.ref for received in unfinished]
        returned += await self._undelivered()
        await self.sub.unsubscribe()
        returned.sort(key=lambda msg: msg.metadata.sequence.stream)  # redelivered in order
        for msg in returned[:-1]:
            await msg.nak()
        if returned:
            try:  # a reply means the server has processed this and every earlier nak and ack
                await self.t.nc.request(returned[-1].reply, NAK, timeout=NAK_TIMEOUT)
            except (NatsTimeout, TimeoutError):
                pass  # left to the ack wait: redelivered later, still before nothing else
        try:
            await self.t.leases.delete(self.lease, last=self.revision)
        except (KeyWrongLastSequenceError, NotFoundError):
            pass

    async def _undelivered(self) -> list[Any]:
        """Messages the server sent us that the engine never got: those of a fetch it
        cancelled, and those a pull request still open on the server sends until it ends."""
        late: list[Any] = []
        if self.pull is not None:
            try:
                late += await self.pull
            except Exception:  # nothing came, or the connection broke: nothing to hand back
                pass
            self.pull = None
        wait = self.pull_ends - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.t.nc.flush()  # whatever the server sent before that has now arrived
        queue = self.sub._sub._pending_queue  # nats-py keeps them here for the next fetch
        while not queue.empty():
            msg = queue.get_nowait()
            if msg.reply and msg.reply.startswith("$JS.ACK."):  # not a status message
                late.append(msg)
        return late


class NatsTransport:
    def __init__(self, nc: Any, options: BusOptions) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.options = options
        self.prefix = options.prefix
        self.stream = f"{self.prefix}_bus"
        self.dlq_stream = f"{self.prefix}_dlq"
        self.ack_wait = float(options.extra.get("ack_wait", max(30.0, options.lease_ttl * 3)))
        self.leases: Any = None
        self.members: Any = None

    @classmethod
    async def open(cls, url: str, options: BusOptions) -> NatsTransport:
        # nats-py reconnects by itself, for ever, and resubscribes; a server that stops
        # answering without closing the socket is noticed after three missed pings.
        nc = await nats.connect(
            strip_query(url),
            name=options.connection_name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            ping_interval=10,
            max_outstanding_pings=3,
        )
        transport = cls(nc, options)
        await transport._declare()
        return transport

    async def _declare(self) -> None:
        # Interest retention: a message stays until every group's consumer has acked it.
        await self.js.add_stream(
            name=self.stream,
            subjects=[f"{self.prefix}.bus.>"],
            retention=api.RetentionPolicy.INTEREST,
            storage=api.StorageType.FILE,
        )
        await self.js.add_stream(name=self.dlq_stream, subjects=[f"{self.prefix}.dlq.>"])
        ttl = self.options.lease_ttl
        self.leases = await self.js.create_key_value(bucket=f"{self.prefix}_leases", ttl=ttl)
        self.members = await self.js.create_key_value(bucket=f"{self.prefix}_members", ttl=ttl)

    def subject(self, topic: str, partition: int) -> str:
        return f"{self.prefix}.bus.{token(topic)}.{partition}"

    @staticmethod
    def durable(topic: str, group: str, partition: int) -> str:
        return f"{token(topic)}-{token(group)}-{partition}"

    async def publish(self, topic: str, partition: int, body: bytes) -> None:
        await self.js.publish(self.subject(topic, partition), body, stream=self.stream)

    async def ensure_group(self, topic: str, group: str) -> None:
        for partition in range(self.options.partitions):
            await self.js.add_consumer(
                self.stream,
                durable_name=self.durable(topic, group, partition),
                filter_subject=self.subject(topic, partition),
                deliver_policy=api.DeliverPolicy.NEW,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                max_ack_pending=-1,
            )

    async def acquire(
        self, topic: str, group: str, partition: int, member: str, prefetch: int
    ) -> NatsReader | None:
        lease = f"{token(topic)}.{token(group)}.{partition}"
        try:
            revision = await self.leases.create(lease, member.encode())
        except KeyWrongLastSequenceError:
            try:
                entry = await self.leases.get(lease)
            except NotFoundError:
                return None
            if entry.value != member.encode():
                return None
            revision = entry.revision
        sub = await self.js.pull_subscribe_bind(
            self.durable(topic, group, partition), stream=self.stream
        )
        return NatsReader(self, sub, lease, member, revision)

    async def heartbeat(self, topic: str, group: str, member: str) -> list[str]:
        scope = f"{token(topic)}.{token(group)}."
        await self.members.put(scope + member.replace(".", "_"), member.encode())
        watcher = await self.members.watch(scope + ">", ignore_deletes=True)
        live = {member}
        try:
            async for entry in watcher:
                if entry is None:  # the watcher has sent every current entry
                    break
                if entry.value:
                    live.add(entry.value.decode())
        finally:
            await watcher.stop()
        return sorted(live)

    async def leave(self, topic: str, group: str, member: str) -> None:
        await self.members.purge(f"{token(topic)}.{token(group)}.{member.replace('.', '_')}")

    def _dead_subject(self, topic: str, group: str) -> str:
        return f"{self.prefix}.dlq.{token(topic)}.{token(group)}"

    async def add_dead(self, topic: str, group: str, record: bytes) -> None:
        await self.js.publish(self._dead_subject(topic, group), record, stream=self.dlq_stream)

    async def _dead(self, topic: str, group: str) -> list[tuple[int, bytes]]:
        subject, seq = self._dead_subject(topic, group), 1
        found: list[tuple[int, bytes]] = []
        while True:
            try:
                msg = await self.js.get_msg(self.dlq_stream, seq, subject=subject, next=True)
            except NotFoundError:
                return found
            assert msg.seq is not None and msg.data is not None
            found.append((msg.seq, msg.data))
            seq = msg.seq + 1

    async def list_dead(self, topic: str, group: str) -> list[bytes]:
        return [record for _, record in await self._dead(topic, group)]

    async def take_dead(self, topic: str, group: str, ids: set[str]) -> list[bytes]:
        taken = []
        for seq, record in await self._dead(topic, group):
            if json.loads(record)["id"] in ids:
                await self.js.delete_msg(self.dlq_stream, seq)
                taken.append(record)
        return taken

    async def lag(self, topic: str, group: str) -> int | None:
        total = 0
        for partition in range(self.options.partitions):
            info = await self.js.consumer_info(self.stream, self.durable(topic, group, partition))
            total += info.num_pending or 0
        return total

    async def ping(self) -> None:
        """Raises while the connection is down (nats-py is reconnecting) or JetStream does
        not answer."""
        if not self.nc.is_connected:
            raise ConnectionError("NATS is not connected (reconnecting)")
        await asyncio.wait_for(self.js.stream_info(self.stream), PING_TIMEOUT)

    async def close(self) -> None:
        await self.nc.drain()

    async def delete_everything(self) -> None:
        """Remove the streams and buckets of this prefix (tests and benchmarks clean up)."""
        for stream in (self.stream, self.dlq_stream):
            try:
                await self.js.delete_stream(stream)
            except NotFoundError:
                pass
        for bucket in (f"{self.prefix}_leases", f"{self.prefix}_members"):
            try:
                await self.js.delete_key_value(bucket)
            except (NotFoundError, BucketNotFoundError):
                pass
