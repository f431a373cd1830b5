"""Presence in Redis, shared by every gateway: each operation is one Lua script, so one round
trip and atomic, on the server's clock (`TIME` inside the script, never a gateway's).

Keys, under `{prefix}:chat:presence:`:

| key | type | member | score |
|---|---|---|---|
| `user:{user_id}` | ZSET | connection id | expiry, unix ms |
| `deadlines` | ZSET | `user_id + "\\x1f" + connection_id` | the same expiry |

Every connection is in both sets with the same score. A connection is live while its expiry
is after now; a user is online while one of theirs is. A user key expires (PEXPIREAT) one TTL
after its latest expiry, so it goes even if no gateway is left to collect it; `deadlines` is
emptied by `expired()`. The call that removes a user's last connection, live or lapsed
(`disconnect` or `expired`), is the one that says they went offline, so each offline is told
once, to one caller. `connect` drops the user's lapsed connections silently and says the user
came online. `expired()` reads keys it builds from `deadlines`, so the layout needs one Redis
(5 or later, for `TIME` before writes in a script), not a cluster spread by key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import redis.asyncio as aioredis

from townhall.chat.adapters.memory import check_ids, check_ttl

SEPARATOR = "\x1f"
# Entries per script call: a script holds Redis while it runs (about 10 us an entry), so a
# big gateway's refresh goes as several calls, sent at once, that other clients run between.
EXPIRED_BATCH = 1000
REFRESH_BATCH = 500
ONLINE_BATCH = 1000

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Move a user key's expiry to `at` unless it is already later.
_EXPIRE_AT = """
local function expire_at(key, at)
  if redis.call('PTTL', key) < at - now then
    redis.call('PEXPIREAT', key, at)
  end
end
"""

# KEYS: user key, deadlines. ARGV: user id, connection id, ttl ms. Returns 1: came online.
CONNECT = (
    _NOW
    + _EXPIRE_AT
    + """
local user, conn, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
for _, lapsed in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[2], user .. '\\31' .. lapsed)
  redis.call('ZREM', KEYS[1], lapsed)
end
local was_offline = redis.call('ZCARD', KEYS[1]) == 0
local expiry = now + ttl
redis.call('ZADD', KEYS[1], expiry, conn)
redis.call('ZADD', KEYS[2], expiry, user .. '\\31' .. conn)
expire_at(KEYS[1], expiry + ttl)
if was_offline then return 1 end
return 0
"""
)

# KEYS: deadlines, then one user key per connection. ARGV: ttl ms, then user id and
# connection id per connection. Only live connections are extended.
REFRESH = (
    _NOW
    + _EXPIRE_AT
    + """
local ttl = tonumber(ARGV[1])
local expiry = now + ttl
for i = 2, #KEYS do
  local user, conn = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local score = redis.call('ZSCORE', KEYS[i], conn)
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[i], expiry, conn)
    redis.call('ZADD', KEYS[1], expiry, user .. '\\31' .. conn)
    expire_at(KEYS[i], expiry + ttl)
  end
end
return 0
"""
)

# KEYS: user key, deadlines. ARGV: user id, connection id. Returns 1: the user went offline.
DISCONNECT = (
    _NOW
    + """
local user, conn = ARGV[1], ARGV[2]
local removed = redis.call('ZREM', KEYS[2], user .. '\\31' .. conn)
redis.call('ZREM', KEYS[1], conn)
if removed == 0 or redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') > 0 then
  return 0
end
for _, lapsed in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('ZREM', KEYS[2], user .. '\\31' .. lapsed)
end
redis.call('DEL', KEYS[1])
return 1
"""
)

# KEYS: user keys. Returns 1 or 0 per key: a live connection or none.
ONLINE = (
    _NOW
    + """
local out = {}
for i = 1, #KEYS do
  if redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf') > 0 then out[i] = 1 else out[i] = 0 end
end
return out
"""
)

# KEYS: deadlines. ARGV: user key prefix, batch size. Returns how many deadlines lapsed
# (at most the batch size), then the users left with no connection.
EXPIRED = (
    _NOW
    + """
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local decided, out = {}, {#entries}
for _, entry in ipairs(entries) do
  local cut = string.find(entry, '\\31', 1, true)
  local user, conn = string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1)
  local key = ARGV[1] .. user
  redis.call('ZREM', KEYS[1], entry)
  redis.call('ZREM', key, conn)
  if not decided[user] then
    decided[user] = true
    if redis.call('ZCOUNT', key, '(' .. now, '+inf') == 0 then
      -- None live left: the user's other lapsed ones go now, so no later call tells it again.
      for _, lapsed in ipairs(redis.call('ZRANGE', key, 0, -1)) do
        redis.call('ZREM', KEYS[1], user .. '\\31' .. lapsed)
      end
      redis.call('DEL', key)
      out[#out + 1] = user
    end
  end
end
return out
"""
)


def _ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


class RedisPresence:
    def __init__(self, client: Any, prefix: str = "townhall") -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError("prefix must be non-empty, without spaces")
        # Typed loosely: redis-py's reply types are unions of every decoding mode.
        self.client: Any = client
        self.base = f"{prefix}:chat:presence:"
        self.deadlines = self.base + "deadlines"
        self._connect = client.register_script(CONNECT)
        self._refresh = client.register_script(REFRESH)
        self._disconnect = client.register_script(DISCONNECT)
        self._online = client.register_script(ONLINE)
        self._expired = client.register_script(EXPIRED)
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, prefix: str = "townhall") -> RedisPresence:
        """A client from `url` (its query may set redis-py options; timeouts default to 5 s so
        a stuck Redis fails a call instead of holding a gateway)."""
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=5
        )
        try:
            presence = cls(client, prefix)
            await presence.ping()
        except BaseException:
            await client.aclose()
            raise
        return presence

    def user_key(self, user_id: str) -> str:
        return f"{self.base}user:{user_id}"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("presence is closed")

    async def connect(self, user_id: str, connection_id: str, ttl: float) -> bool:
        self._check_open()
        check_ids(user_id, connection_id)
        check_ttl(ttl)
        keys = [self.user_key(user_id), self.deadlines]
        return bool(await self._connect(keys=keys, args=[user_id, connection_id, _ms(ttl)]))

    async def refresh(self, connections: Sequence[tuple[str, str]], ttl: float) -> None:
        """Only live connections are extended: one disconnected, or lapsed, stays gone (its
        socket connects again to come back). REFRESH_BATCH connections per script call, the
        calls made at once."""
        self._check_open()
        check_ttl(ttl)
        for user_id, connection_id in connections:
            check_ids(user_id, connection_id)
        calls = []
        for start in range(0, len(connections), REFRESH_BATCH):
            keys: list[str] = [self.deadlines]
            args: list[str | int] = [_ms(ttl)]
            for user_id, connection_id in connections[start : start + REFRESH_BATCH]:
                keys.append(self.user_key(user_id))
                args += [user_id, connection_id]
            calls.append(self._refresh(keys=keys, args=args))
        await asyncio.gather(*calls)

    async def disconnect(self, user_id: str, connection_id: str) -> bool:
        self._check_open()
        check_ids(user_id, connection_id)
        keys = [self.user_key(user_id), self.deadlines]
        return bool(await self._disconnect(keys=keys, args=[user_id, connection_id]))

    async def online(self, user_ids: Collection[str]) -> set[str]:
        """ONLINE_BATCH users per script call, the calls made at once."""
        self._check_open()
        users = list(dict.fromkeys(user_ids))
        batches = [users[n : n + ONLINE_BATCH] for n in range(0, len(users), ONLINE_BATCH)]
        replies = await asyncio.gather(
            *(self._online(keys=[self.user_key(u) for u in batch]) for batch in batches)
        )
        return {
            user
            for batch, flags in zip(batches, replies, strict=True)
            for user, flag in zip(batch, flags, strict=True)
            if flag
        }

    async def expired(self) -> list[str]:
        """Collects every lapsed connection, EXPIRED_BATCH per script call."""
        self._check_open()
        offline: list[str] = []
        while True:
            lapsed, *users = await self._expired(
                keys=[self.deadlines], args=[self.base + "user:", EXPIRED_BATCH]
            )
            offline += users
            if int(lapsed) < EXPIRED_BATCH:
                return offline

    async def ping(self) -> None:
        self._check_open()
        await self.client.ping()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.aclose()
