"""Home timelines in Redis: one sorted set per reader, every member a post id with score 0, so
Redis orders them by their bytes, which for UUIDv7 strings is the order they were made in.

Keys (under `PREFIX:feed:`): `tl:OWNER` the timeline. A page is
`ZREVRANGEBYLEX tl:OWNER (BEFORE ( LIMIT 0 N`.

"Cached" is the key itself: a built timeline always holds the empty string as a member (it
sorts below every id, and the `(` bound leaves it out of every page), so an empty timeline that
was built is told apart from one never built, and Redis evicting the key under memory pressure
makes the timeline "not cached" (rebuilt from SQL on its next read). A separate marker key
could be evicted without its set, and the reader would be shown an empty timeline, or only
what was pushed since, until something dropped it.

Writes for many readers go in one script call per batch (all the calls of a push in one
pipeline: one round trip, plus redis-py's SCRIPT EXISTS check before it): a push adds only to
the timelines that exist (checked where the write happens, atomically) and trims each to
`length`. The scripts name keys they build, so this needs a single Redis, not a cluster.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from redis import asyncio as aioredis

BUILT = ""  # the member that marks a timeline built; sorts below every post id

# ARGV: length, key prefix, then owner, post id pairs. KEYS: none (built from the prefix).
# Rank 0 is the BUILT member: the trim removes ranks 1 .. -(length + 1), keeping `length` ids.
PUSH = """
local length = tonumber(ARGV[1])
local base = ARGV[2]
local touched = {}
for i = 3, #ARGV, 2 do
  local key = base .. 'tl:' .. ARGV[i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', key, 0, ARGV[i + 1])
    touched[key] = true
  end
end
for key, _ in pairs(touched) do
  redis.call('ZREMRANGEBYRANK', key, 1, -(length + 1))
end
return 0
"""

BATCH = 2000  # (owner, post) pairs a script call


class RedisTimelines:
    def __init__(self, client: Any, *, prefix: str = "townhall", length: int = 800) -> None:
        self.client: Any = client
        self.length = length
        self.base = f"{prefix}:feed:"
        self._push = client.register_script(PUSH)

    @classmethod
    async def open(cls, url: str, *, prefix: str = "townhall", length: int = 800) -> RedisTimelines:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2
        )
        timelines = cls(client, prefix=prefix, length=length)
        try:
            await timelines.ping()
        except BaseException:
            await client.aclose()
            raise
        return timelines

    def _tl(self, owner: str) -> str:
        return f"{self.base}tl:{owner}"

    async def push(self, entries: Sequence[tuple[str, str]]) -> None:
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(entries), BATCH):
            args: list[Any] = [self.length, self.base]
            for owner, post_id in entries[start : start + BATCH]:
                if post_id != BUILT:
                    args += [owner, post_id]
            await self._push(args=args, client=pipe)
        await pipe.execute()

    async def page(self, owner: str, before: str | None, limit: int) -> list[str] | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self._tl(owner))
        pipe.zrevrangebylex(
            self._tl(owner), f"({before}" if before is not None else "+", "(", 0, limit
        )
        cached, ids = await pipe.execute()
        return list(ids) if cached else None

    async def size(self, owner: str) -> int | None:
        count = int(await self.client.zcard(self._tl(owner)))
        return count - 1 if count else None  # the BUILT member is not an entry

    async def replace(self, owner: str, post_ids: Sequence[str]) -> None:
        ids = sorted(set(post_ids) - {BUILT})
        newest = ids[max(0, len(ids) - self.length) :]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._tl(owner))
        pipe.zadd(self._tl(owner), {BUILT: 0})
        for start in range(0, len(newest), 1000):
            pipe.zadd(self._tl(owner), {post_id: 0 for post_id in newest[start : start + 1000]})
        await pipe.execute()

    async def remove(self, owner: str, post_ids: Collection[str]) -> None:
        gone = [post_id for post_id in post_ids if post_id != BUILT]
        if gone:
            await self.client.zrem(self._tl(owner), *gone)

    async def drop(self, owner: str) -> None:
        await self.client.delete(self._tl(owner))

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
