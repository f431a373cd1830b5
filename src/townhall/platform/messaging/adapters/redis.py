"""Redis Streams: one stream per topic partition, one Redis consumer group per bus group.

A partition's lease is a key set with NX and a TTL; the member that takes a lease over first
claims the partition's pending entries (XAUTOCLAIM), so a killed member loses nothing.

That first sweep can miss entries: a blocking XREADGROUP of the previous owner that Redis
serves after the sweep (the owner gave the lease up, or lost it, while its read was on the
way) leaves entries pending under a consumer that will never ack them. So the owner also
looks, once per lease TTL, for entries of other consumers idle for two lease TTLs, and
claims them (XPENDING + XCLAIM; never its own, which may be in a handler right now).

redis-py opens a dropped connection again on the next command. A blocking read whose
connection drops may have been served (its entries now pending under this member) with the
reply lost: so the reader never retries a read; its lease ends instead (`renew` says False),
and the engine takes the partition again with a new reader, which claims those entries first.
A Redis restarted without its data has lost the groups too: a reader that finds its group gone
makes it again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from townhall.platform.batching import Batcher
from townhall.platform.messaging.transport import BusOptions, ReceivedMessage, strip_query

PIPELINE_MOST = 500  # publishes per pipeline
SWEEP_MOST = 1000  # pending entries looked at per sweep for stranded ones
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisReader:
    def __init__(
        self, transport: RedisTransport, stream: str, group: str, lease: str, member: str
    ) -> None:
        self.t = transport
        self.stream = stream
        self.group = group
        self.lease = lease
        self.member = member
        self.claim_cursor: str | None = "0-0"  # claim what earlier owners left, then read new
        self.stranded_after = int(transport.options.lease_ttl * 2000)  # ms idle
        self.next_sweep = time.monotonic() + transport.options.lease_ttl
        self.lost = False  # a read failed on the wire: what it got may be pending unseen

    async def fetch(self, count: int, wait: float) -> list[ReceivedMessage]:
        try:
            return await self._fetch(count, wait)
        except (RedisConnectionError, RedisTimeoutError):
            self.lost = True
            raise
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the group (restarted without its data): make it again from the start
            # of the stream, so nothing published since the restart is skipped.
            await self.t.create_group(self.stream, self.group, "0")
            self.claim_cursor = "0-0"
            return []

    async def _fetch(self, count: int, wait: float) -> list[ReceivedMessage]:
        client = self.t.client
        if self.claim_cursor is not None:
            cursor, entries, *_ = await client.xautoclaim(
                self.stream, self.group, self.member, 0, self.claim_cursor, count=count
            )
            cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
            self.claim_cursor = None if cursor == "0-0" else cursor
            got = [self._received(i, f, 1) for i, f in entries if f]
            if got or self.claim_cursor is not None:
                return got
        if time.monotonic() >= self.next_sweep:
            self.next_sweep = time.monotonic() + self.t.options.lease_ttl
            got = await self.claim_stranded(count)
            if got:
                return got
        reply = await self.t.reader_client.xreadgroup(
            self.group, self.member, {self.stream: ">"}, count=count, block=int(wait * 1000)
        )
        return [self._received(i, f, 0) for _, entries in reply or [] for i, f in entries]

    async def claim_stranded(self, count: int) -> list[ReceivedMessage]:
        """Entries other consumers of the group left pending for two lease TTLs."""
        client = self.t.client
        pending = await client.xpending_range(
            self.stream, self.group, "-", "+", SWEEP_MOST, idle=self.stranded_after
        )
        mine = self.member.encode()
        ids = [entry["message_id"] for entry in pending if entry["consumer"] != mine][:count]
        if not ids:
            return []
        entries = await client.xclaim(
            self.stream, self.group, self.member, self.stranded_after, ids
        )
        # An entry trimmed from the stream meanwhile comes back empty (or not at all).
        return [self._received(e[0], e[1], 1) for e in entries if e and e[1]]

    @staticmethod
    def _received(entry_id: Any, fields: dict[bytes, bytes], previous: int) -> ReceivedMessage:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return ReceivedMessage(fields[b"b"], entry, entry, previous)

    batch_acks = True

    async def ack(self, received: ReceivedMessage) -> None:
        await self.t.client.xack(self.stream, self.group, received.ref)

    async def ack_many(self, batch: Sequence[ReceivedMessage]) -> None:
        if batch:
            await self.t.client.xack(self.stream, self.group, *(received.ref for received in batch))

    async def renew(self) -> bool:
        if self.lost:
            return False
        ttl = int(self.t.options.lease_ttl * 1000)
        return bool(await self.t.renew(keys=[self.lease], args=[self.member, ttl]))

    async def release(self, unfinished: Sequence[ReceivedMessage]) -> None:
        # Unfinished entries stay pending in the group; the next owner claims them first.
        await self.t.release(keys=[self.lease], args=[self.member])


# Blocking reads a process may hold at once (Redis's own default limit is 10,000 clients).
READER_CONNECTIONS = 4096


class RedisTransport:
    def __init__(self, url: str, options: BusOptions) -> None:
        self.options = options
        # Typed loosely: redis-py's reply types are unions of every decoding mode.
        # CLIENT LIST shows the connections under the bus's connection name.
        name = options.connection_name
        self.client: Any = aioredis.Redis.from_url(strip_query(url), client_name=name)
        # Blocking reads get their own pool so they never starve acks and publishes; they are
        # never retried (see the module's docstring). Each (group, partition) a process reads
        # holds one of its connections while it blocks, so the pool is not capped at redis-py's
        # default of 100: with every module's groups on 4 partitions a process has more readers
        # than that, and the reads past the cap failed ("Too many connections") for ever.
        self.reader_client: Any = aioredis.Redis.from_url(
            strip_query(url),
            client_name=name,
            retry=Retry(NoBackoff(), 0),
            max_connections=READER_CONNECTIONS,
        )
        self.renew = self.client.register_script(RENEW)
        self.release = self.client.register_script(RELEASE)
        self.maxlen = int(options.extra["maxlen"]) if "maxlen" in options.extra else None
        # Publishes made while an earlier pipeline is on its way go together in the next.
        self._publishes: Batcher[tuple[str, bytes], None] = Batcher(
            self._xadd_all, max_size=PIPELINE_MOST
        )

    @classmethod
    async def open(cls, url: str, options: BusOptions) -> RedisTransport:
        transport = cls(url, options)
        await transport.ping()
        return transport

    def _key(self, *parts: object) -> str:
        return ":".join([self.options.prefix, "bus", *map(str, parts)])

    def stream(self, topic: str, partition: int) -> str:
        return self._key(topic, partition)

    async def publish(self, topic: str, partition: int, body: bytes) -> None:
        """Returns once Redis replied to this XADD. Publishes made while an earlier batch is
        on its way are sent together in one pipeline (one round trip), in call order."""
        await self._publishes.submit((self.stream(topic, partition), body))

    async def _xadd_all(self, batch: Sequence[tuple[str, bytes]]) -> list[Exception | None]:
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, body in batch:
                pipe.xadd(stream, {"b": body}, maxlen=self.maxlen, approximate=True)
            replies = await pipe.execute(raise_on_error=False)
        return [reply if isinstance(reply, Exception) else None for reply in replies]

    async def ensure_group(self, topic: str, group: str) -> None:
        for partition in range(self.options.partitions):
            await self.create_group(self.stream(topic, partition), group, "$")

    async def create_group(self, stream: str, group: str, start: str) -> None:
        """The consumer group on `stream`, reading from `start`, unless it exists already."""
        try:
            await self.client.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def acquire(
        self, topic: str, group: str, partition: int, member: str, prefetch: int
    ) -> RedisReader | None:
        lease = self._key("lease", topic, group, partition)
        ttl = int(self.options.lease_ttl * 1000)
        holder = await self.client.set(lease, member, nx=True, px=ttl)
        if not holder and (await self.client.get(lease)) != member.encode():
            return None
        return RedisReader(self, self.stream(topic, partition), group, lease, member)

    async def heartbeat(self, topic: str, group: str, member: str) -> list[str]:
        key = self._key("members", topic, group)
        now = time.time()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {member: now})
            pipe.zremrangebyscore(key, "-inf", now - self.options.lease_ttl)
            pipe.zrange(key, 0, -1)
            pipe.expire(key, int(self.options.lease_ttl * 10) + 1)
            *_, members, _ = await pipe.execute()
        return sorted(m.decode() for m in members)

    async def leave(self, topic: str, group: str, member: str) -> None:
        await self.client.zrem(self._key("members", topic, group), member)

    def _dead(self, topic: str, group: str) -> str:
        return self._key("dlq", topic, group)

    async def add_dead(self, topic: str, group: str, record: bytes) -> None:
        import json

        record_id = json.loads(record)["id"]
        await self.client.xadd(self._dead(topic, group), {"id": record_id, "r": record})

    async def list_dead(self, topic: str, group: str) -> list[bytes]:
        entries = await self.client.xrange(self._dead(topic, group))
        return [fields[b"r"] for _, fields in entries]

    async def take_dead(self, topic: str, group: str, ids: set[str]) -> list[bytes]:
        key = self._dead(topic, group)
        taken = []
        for entry_id, fields in await self.client.xrange(key):
            if fields[b"id"].decode() in ids and await self.client.xdel(key, entry_id):
                taken.append(fields[b"r"])
        return taken

    async def lag(self, topic: str, group: str) -> int | None:
        total = 0
        for partition in range(self.options.partitions):
            try:
                groups = await self.client.xinfo_groups(self.stream(topic, partition))
            except ResponseError:
                return None
            for info in groups:
                name = info["name"]
                if (name.decode() if isinstance(name, bytes) else name) == group:
                    total += int(info.get("lag") or 0)
        return total

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self._publishes.idle()
        await self.client.aclose()
        await self.reader_client.aclose()

    async def delete_everything(self) -> None:
        """Remove every key under this bus's prefix (tests and benchmarks clean up)."""
        async for key in self.client.scan_iter(match=f"{self.options.prefix}:bus:*", count=1000):
            await self.client.delete(key)
