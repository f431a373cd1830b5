"""Provider policies around any sender: a token-bucket rate limit and failover with cool-down.

A channel's sender is built as `FailoverSender([RateLimitedSender(a, bucket_a), ...])`: a burst
waits for tokens instead of being refused by the provider, and a provider that fails
transiently N times in a row is skipped for a cool-down while the next one serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from townhall.notifications.domain import Delivered, Permanent, SendOutcome, Transient
from townhall.notifications.ports import Sender

MessageT = TypeVar("MessageT", contravariant=True)


class Timer(Protocol):
    """Monotonic seconds and a way to wait: the loop's in production, a manual one in tests."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopTimer:
    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`. `acquire` waits for a token.

    Waiters are served first come, first served: one waits at a time, holding the lock.
    """

    def __init__(self, rate: float, burst: int, timer: Timer | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._timer = timer or LoopTimer()
        self._tokens = float(burst)
        self._updated: float | None = None
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._timer.monotonic()
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            # The epsilon absorbs float rounding, which could otherwise ask for a sleep too
            # short to move the clock at all.
            while self._tokens < 1 - 1e-9:
                await self._timer.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


class RateLimitedSender(Sender[MessageT]):
    def __init__(self, sender: Sender[MessageT], bucket: TokenBucket) -> None:
        self.name = sender.name
        self._sender = sender
        self._bucket = bucket

    async def send(self, message: MessageT) -> SendOutcome:
        await self._bucket.acquire()
        return await self._sender.send(message)

    async def aclose(self) -> None:
        await self._sender.aclose()


@dataclass
class ProviderHealth:
    name: str
    failures_in_a_row: int = 0
    cooling_until: float | None = None

    def available(self, now: float) -> bool:
        return self.cooling_until is None or now >= self.cooling_until


class FailoverSender(Sender[MessageT]):
    """Sends through the first provider that is not cooling down.

    A transient answer is returned to the caller (the bus retries it with backoff), not retried
    on the next provider at once: after a timeout the first provider may well have sent it.
    A provider's `threshold`-th transient failure in a row starts its cool-down; any answer
    that shows the provider working (delivered, or a permanent refusal of this recipient)
    resets its count. Back from a cool-down, a provider is on probation: its first transient
    failure starts the next cool-down at once. When every provider is cooling, the answer is
    transient with a `retry_after` of the soonest end of a cool-down.
    """

    def __init__(
        self,
        providers: Sequence[Sender[MessageT]],
        *,
        threshold: int = 3,
        cooldown: float = 30.0,
        timer: Timer | None = None,
    ) -> None:
        if not providers:
            raise ValueError("failover needs at least one provider")
        self.name = "+".join(provider.name for provider in providers)
        self._providers = list(providers)
        self._health = [ProviderHealth(provider.name) for provider in providers]
        self._threshold = threshold
        self._cooldown = cooldown
        self._timer = timer or LoopTimer()

    @property
    def health(self) -> list[ProviderHealth]:
        return list(self._health)

    async def send(self, message: MessageT) -> SendOutcome:
        now = self._timer.monotonic()
        for provider, health in zip(self._providers, self._health, strict=True):
            if not health.available(now):
                continue
            outcome = await provider.send(message)
            self._observe(health, outcome)
            return outcome
        soonest = min(h.cooling_until for h in self._health if h.cooling_until is not None)
        return Transient("every provider is cooling down", retry_after=max(0.0, soonest - now))

    def _observe(self, health: ProviderHealth, outcome: SendOutcome) -> None:
        if isinstance(outcome, Delivered | Permanent):
            health.failures_in_a_row = 0
            health.cooling_until = None
            return
        health.failures_in_a_row += 1
        # Back from a cool-down, one more failure is enough to cool down again (half-open).
        if health.failures_in_a_row >= self._threshold or health.cooling_until is not None:
            health.failures_in_a_row = 0
            health.cooling_until = self._timer.monotonic() + self._cooldown

    async def aclose(self) -> None:
        await asyncio.gather(*(provider.aclose() for provider in self._providers))
