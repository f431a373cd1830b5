"""The consumer engine every adapter shares: partition leases, per-key ordering, prefetch,
retries with backoff, dead letters and replay. Adapters only move bytes (`transport.py`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from prometheus_client import Counter

from townhall.platform.ids import new_id
from townhall.platform.messaging.envelope import (
    REPLAY_HEADER,
    Envelope,
    MalformedEnvelope,
    check_name,
)
from townhall.platform.messaging.metrics import BusMetrics, bus_metrics
from townhall.platform.messaging.ports import DeadLetter, Handler
from townhall.platform.messaging.retry import Backoff
from townhall.platform.messaging.transport import PartitionReader, ReceivedMessage, Transport

log = logging.getLogger(__name__)

FETCH_BATCH = 100
FETCH_TIMEOUT = 0.25


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


class Window:
    """Counts unacked messages a member holds; fetching waits while it is full.

    Fair: whoever waits is served first, in turn. A partition that gives its share back (an
    empty fetch) and asks again at once gets in line behind the partitions waiting; without
    that, with fewer window slots than partitions, the same partitions took the slots back
    before a waiting one woke, and the others were never read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def reserve(self, most: int) -> int:
        if self.used >= self.size or self._waiters:
            turn = asyncio.get_running_loop().create_future()
            self._waiters.append(turn)
            try:
                await turn  # resolved with one slot taken on our behalf
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self.release(1)  # handed a slot, but gone: the next in line takes it
                else:
                    self._waiters.remove(turn)
                raise
            extra = min(most - 1, self.size - self.used)
            self.used += extra
            return 1 + extra
        taken = min(most, self.size - self.used)
        self.used += taken
        return taken

    def release(self, count: int) -> None:
        if count:
            self.used -= count
            while self._waiters and self.used < self.size:
                turn = self._waiters.popleft()
                if not turn.done():
                    self.used += 1
                    turn.set_result(None)


Item = tuple[ReceivedMessage, Envelope | None, str]


class PartitionConsumer:
    """Consumes one leased partition: one task per key with work, so keys run concurrently
    and each key's messages run one after another."""

    def __init__(self, member: Member, partition: int, reader: PartitionReader) -> None:
        self.member = member
        self.partition = partition
        self.reader = reader
        self.stopping = asyncio.Event()
        self.keys: dict[str, deque[Item]] = {}
        self.unacked: dict[ReceivedMessage, None] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # Handled messages whose ack is not sent yet, and the task sending them (batch_acks).
        self.acks: list[ReceivedMessage] = []
        self.flusher: asyncio.Task[None] | None = None
        self.fetcher = asyncio.create_task(self._fetch_loop())

    async def _fetch_loop(self) -> None:
        window = self.member.window
        while not self.stopping.is_set():
            # A partition holds at most its share of the window, even while it waits for
            # messages, so a quiet partition never starves a busy one.
            share = max(1, self.member.prefetch // max(1, len(self.member.consumers)))
            reserved = await window.reserve(min(FETCH_BATCH, share))
            if self.stopping.is_set():
                window.release(reserved)
                return
            got: list[ReceivedMessage] = []
            try:
                got = await self.reader.fetch(reserved, FETCH_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fetch failed on partition %s", self.partition)
                await asyncio.sleep(0.5)
            finally:
                window.release(reserved - len(got))
            for received in got:
                self._submit(received)

    def _submit(self, received: ReceivedMessage) -> None:
        self.unacked[received] = None
        item: Item
        if received.envelope is not None:
            item = (received, received.envelope, "")
            key = received.envelope.key
        else:
            try:
                envelope = Envelope.from_bytes(received.body)
                item, key = (received, envelope, ""), envelope.key
            except MalformedEnvelope as exc:
                item, key = (received, None, str(exc)), "\x00malformed"
        queue = self.keys.get(key)
        if queue is None:
            queue = self.keys[key] = deque()
            task = asyncio.create_task(self._run_key(key, queue))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        queue.append(item)

    async def _run_key(self, key: str, queue: deque[Item]) -> None:
        try:
            while queue and not self.stopping.is_set():
                if not await self._process(*queue[0]):
                    return
                queue.popleft()
        except Exception:
            log.exception("consumer of partition %s failed", self.partition)
        finally:
            if not queue or self.stopping.is_set():
                self.keys.pop(key, None)

    async def _done(self, received: ReceivedMessage) -> None:
        if not self.reader.batch_acks:
            await self.reader.ack(received)
            del self.unacked[received]
            self.member.window.release(1)
            return
        # Acks go out in handling order, in batches: whatever was handled while the previous
        # batch was on its way. The window slot is freed once the broker has the ack.
        self.acks.append(received)
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        try:
            while self.acks:
                batch, self.acks = self.acks, []
                try:
                    await self.reader.ack_many(batch)
                except Exception:
                    # Left pending on the broker: redelivered once the lease or ack wait ends.
                    log.exception(
                        "acking %s messages on partition %s failed", len(batch), self.partition
                    )
                for received in batch:
                    self.unacked.pop(received, None)
                self.member.window.release(len(batch))
        finally:
            self.flusher = None

    async def _process(
        self, received: ReceivedMessage, envelope: Envelope | None, error: str
    ) -> bool:
        """Handle one message to the end; False if it was left unacked because we stop."""
        member = self.member
        attempt = received.times_received_before + 1
        if envelope is None:
            await member.dead_letter(received.broker_id, None, received.body, error, attempt)
            await self._done(received)
            return True
        replay_group = envelope.headers.get(REPLAY_HEADER)
        if replay_group is not None and replay_group != member.group:
            await self._done(received)
            return True
        while True:
            started = time.perf_counter()
            try:
                await member.handler(envelope.with_headers(attempt=str(attempt)))
            except Exception as exc:
                member.observe(started)
                if attempt >= member.max_attempts:
                    await member.dead_letter(
                        str(envelope.id), envelope, b"", f"{type(exc).__name__}: {exc}", attempt
                    )
                    await self._done(received)
                    return True
                member.retried.inc()
                delay = member.backoff.delay(attempt, exc)
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    return False
                except TimeoutError:
                    attempt += 1
            else:
                member.observe(started)
                member.handled.inc()
                await self._done(received)
                return True

    async def stop(self) -> None:
        """Finish running handlers, then hand back the lease and what was not handled."""
        self.stopping.set()
        self.fetcher.cancel()
        await asyncio.gather(self.fetcher, return_exceptions=True)
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.flusher is not None:
            await asyncio.gather(self.flusher, return_exceptions=True)
        unfinished = list(self.unacked)
        self.unacked.clear()
        self.member.window.release(len(unfinished))
        try:
            await self.reader.release(unfinished)
        except Exception:
            log.exception("releasing partition %s failed", self.partition)


class Member:
    """One subscriber of a group (the `Subscription` `subscribe` returns). Members of a group
    share its partitions out between them and take over the partitions of members that left."""

    def __init__(
        self,
        bus: PartitionedBus,
        topic: str,
        group: str,
        handler: Handler,
        prefetch: int,
        max_attempts: int,
    ) -> None:
        self.bus = bus
        self.transport = bus.transport
        self.topic = topic
        self.group = group
        self.handler = handler
        self.max_attempts = max(1, max_attempts)
        self.prefetch = max(1, prefetch)
        self.window = Window(self.prefetch)
        self.backoff = bus.backoff
        self.metrics = bus.metrics
        self.id = f"{socket.gethostname()}-{os.getpid()}-{new_id().hex[-8:]}"
        self.consumers: dict[int, PartitionConsumer] = {}
        self._loop: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        # Labelled children looked up once: this is the per-message hot path.
        self._latency = self.metrics.handler_seconds.labels(topic, group)
        self.handled = self.metrics.handled.labels(topic, group)
        self.retried = self.metrics.retried.labels(topic, group)

    def observe(self, started: float) -> None:
        self._latency.observe(time.perf_counter() - started)

    async def start(self) -> None:
        await self.transport.ensure_group(self.topic, self.group)
        await self._rebalance()
        self._loop = asyncio.create_task(self._rebalance_loop())

    async def _rebalance_loop(self) -> None:
        # Stopped by an event, not by cancellation: client libraries may swallow a cancel.
        while not self._closing.is_set():
            try:
                await asyncio.wait_for(
                    self._closing.wait(), self.transport.options.rebalance_interval
                )
                return
            except TimeoutError:
                pass
            try:
                await self._rebalance()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rebalance of %s/%s failed", self.topic, self.group)

    async def _rebalance(self) -> None:
        partitions = self.transport.options.partitions
        members = await self.transport.heartbeat(self.topic, self.group, self.id)
        if self.id not in members:
            members = sorted({*members, self.id})
        wanted = {p for p in range(partitions) if members[p % len(members)] == self.id}
        for partition, consumer in list(self.consumers.items()):
            if partition not in wanted or not await consumer.reader.renew():
                del self.consumers[partition]
                await consumer.stop()
        per_partition = max(1, self.prefetch // max(1, len(wanted)))
        for partition in sorted(wanted - set(self.consumers)):
            reader = await self.transport.acquire(
                self.topic, self.group, partition, self.id, per_partition
            )
            if reader is not None:
                self.consumers[partition] = PartitionConsumer(self, partition, reader)
        lag = await self.transport.lag(self.topic, self.group)
        if lag is not None:
            self.metrics.lag.labels(self.topic, self.group).set(lag)

    async def dead_letter(
        self, record_id: str, envelope: Envelope | None, raw: bytes, error: str, attempts: int
    ) -> None:
        if envelope is not None:
            headers = {k: v for k, v in envelope.headers.items() if k != REPLAY_HEADER}
            headers.pop("attempt", None)
            envelope_dict = {**envelope.to_dict(), "headers": headers}
        record = {
            "id": record_id or new_id().hex,
            "envelope": envelope_dict if envelope is not None else None,
            "raw": raw.decode("utf-8", "replace"),
            "error": error[:2000],
            "attempts": attempts,
            "failed_at": datetime.now(UTC).isoformat(),
        }
        await self.transport.add_dead(self.topic, self.group, json.dumps(record).encode())
        self.metrics.dead_lettered.labels(self.topic, self.group).inc()

    async def stop(self) -> None:
        self._closing.set()
        if self._loop is not None:
            await asyncio.gather(self._loop, return_exceptions=True)
        consumers, self.consumers = list(self.consumers.values()), {}
        await asyncio.gather(*(consumer.stop() for consumer in consumers))
        try:
            await self.transport.leave(self.topic, self.group, self.id)
        except Exception:
            log.exception("leaving %s/%s failed", self.topic, self.group)
        self.bus.members.discard(self)


def decode_dead_letter(record: bytes) -> DeadLetter:
    data = json.loads(record)
    return DeadLetter(
        id=data["id"],
        envelope=Envelope.from_dict(data["envelope"]) if data.get("envelope") else None,
        error=data["error"],
        attempts=int(data["attempts"]),
        failed_at=datetime.fromisoformat(data["failed_at"]),
        raw=data.get("raw", ""),
    )


class PartitionedBus:
    """A `MessageBus` on any `Transport`."""

    def __init__(self, transport: Transport, metrics: BusMetrics | None = None) -> None:
        self.transport = transport
        options = transport.options
        self.backoff = Backoff(options.backoff_base, options.backoff_cap)
        self.metrics = metrics or bus_metrics()
        self.members: set[Member] = set()
        # The in-process transport takes envelopes as they are: no JSON on the way.
        self._publish_envelope = getattr(transport, "publish_envelope", None)
        self._published: dict[str, Counter] = {}  # per topic: checked name, labelled child

    @property
    def in_process(self) -> bool:
        """True when the broker is this process's memory (see `MessageBus.in_process`)."""
        return bool(getattr(self.transport, "in_process", False))

    async def publish(
        self, topic: str, envelope: Envelope, *, on_settled: Callable[[], None] | None = None
    ) -> None:
        published = self._published.get(topic)
        if published is None:
            check_name("topic", topic)
            published = self._published[topic] = self.metrics.published.labels(topic)
        partition = partition_of(envelope.key, self.transport.options.partitions)
        if self._publish_envelope is not None:
            await self._publish_envelope(topic, partition, envelope, on_settled)
        else:
            await self.transport.publish(topic, partition, envelope.to_bytes())
        published.inc()

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        prefetch: int = 100,
        max_attempts: int = 5,
    ) -> Member:
        check_name("topic", topic)
        check_name("group", group)
        member = Member(self, topic, group, handler, prefetch, max_attempts)
        await member.start()
        self.members.add(member)
        return member

    async def dead_letters(self, topic: str, group: str) -> list[DeadLetter]:
        letters = []
        for record in await self.transport.list_dead(topic, group):
            try:
                letters.append(decode_dead_letter(record))
            except (ValueError, KeyError, TypeError, MalformedEnvelope):
                log.warning("unreadable dead-letter record in %s/%s", topic, group)
        return letters

    async def replay(
        self, topic: str, group: str, ids: Sequence[str | uuid.UUID] | None = None
    ) -> int:
        """Put dead letters back for `group` only. Letters that were not envelopes stay."""
        wanted = None if ids is None else {str(i) for i in ids}
        chosen = {
            letter.id
            for letter in await self.dead_letters(topic, group)
            if letter.envelope is not None and (wanted is None or letter.id in wanted)
        }
        if not chosen:
            return 0
        taken = [
            decode_dead_letter(r) for r in await self.transport.take_dead(topic, group, chosen)
        ]
        for letter in taken:
            assert letter.envelope is not None
            await self.publish(topic, letter.envelope.with_headers(**{REPLAY_HEADER: group}))
        return len(taken)

    async def ping(self) -> None:
        await self.transport.ping()

    async def close(self) -> None:
        await asyncio.gather(*(member.stop() for member in list(self.members)))
        await self.transport.close()
