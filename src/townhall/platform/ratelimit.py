"""Rate limits per route group, per user and per client IP, on the `limits` library.

In-process on embedded defaults; in Redis when `TOWNHALL_REDIS_URL` is set, so every process
of an installation shares one budget.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger(__name__)

DEFAULT_GROUP_LIMITS = {"default": "600/minute", "auth": "20/minute"}


class RateLimited(Exception):
    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded ({scope})")
        self.scope = scope
        self.retry_after = retry_after


@dataclass(frozen=True)
class GroupLimit:
    group: str
    item: RateLimitItem


def parse_group_limits(spec: str) -> dict[str, RateLimitItem]:
    """`'auth=10/minute;default=300/minute'` over the defaults; raises ValueError when malformed."""
    limits = dict(DEFAULT_GROUP_LIMITS)
    for part in filter(None, (p.strip() for p in spec.replace(",", ";").split(";"))):
        group, sep, value = part.partition("=")
        if not sep or not group.strip() or not value.strip():
            raise ValueError(f"expected GROUP=LIMIT, got {part!r}")
        limits[group.strip()] = value.strip()
    return {group: parse(value) for group, value in limits.items()}


class RateLimiter:
    def __init__(
        self,
        group_limits: dict[str, RateLimitItem],
        ip_limit: RateLimitItem,
        redis_url: str | None = None,
        key_prefix: str = "townhall",
    ) -> None:
        self._groups = group_limits
        self._ip_limit = ip_limit
        storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            storage = RedisStorage(
                uri, implementation="redispy", key_prefix=f"{key_prefix}:ratelimit"
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._warned_at = -math.inf

    def limit_for(self, group: str) -> RateLimitItem:
        return self._groups.get(group) or self._groups["default"]

    async def check(self, group: str, client_ip: str, user_id: str | None) -> None:
        """Count one request; raise `RateLimited` with a Retry-After when over a limit.

        Fails open: while the limit storage (Redis) cannot be reached the request is let
        through, and logged, rather than refused: the limits protect the service, they are
        not worth an outage of it (`/readyz` names Redis meanwhile)."""
        try:
            await self._hit(self._ip_limit, "ip", client_ip)
            item = self.limit_for(group)
            if user_id is not None:
                await self._hit(item, group, "user", user_id)
            else:
                await self._hit(item, group, "ip", client_ip)
        except RateLimited:
            raise
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned_at > 10:  # once in 10 s, not once a request
                self._warned_at = now
                log.warning("rate limits not applied: their storage failed: %s", exc)

    async def _hit(self, item: RateLimitItem, *identifiers: str) -> None:
        if await self._limiter.hit(item, *identifiers):
            return
        stats = await self._limiter.get_window_stats(item, *identifiers)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited("/".join(identifiers[:2]), retry_after)

    async def ping(self) -> None:
        if not await self.storage.check():
            raise ConnectionError("rate limit storage is unreachable")
