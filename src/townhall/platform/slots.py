"""A limit on work under way that lets a group of items start together.

A semaphore hands out one permit at a time. When it is exhausted, a group of items (the
deliveries of one message, say) gets its permits one by one as earlier work ends, so the
group starts one item at a time and whatever the items would have done together (one batched
read, one batched write) is done a few at a time. `Slots.take(n)` waits until `n` slots are
free and takes them at once; each item gives its slot back when it ends, so freed capacity
is not held until the whole group is done. Waiters are served first come, first served: a
big group is not starved by small ones, and as no one holds part of a group while waiting
for the rest, two groups cannot deadlock.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def take(self, n: int) -> None:
        """Wait until `n` slots are free (and every earlier waiter is served), then take
        them."""
        if not 1 <= n <= self.capacity:
            raise ValueError(f"cannot take {n} of {self.capacity} slots")
        if not self._waiters and self._free >= n:
            self._free -= n
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give(n)  # granted, but the taker was cancelled before it ran on
            else:
                self._waiters.remove((n, future))
                self._serve()  # the waiter behind it may fit now
            raise

    def give(self, n: int = 1) -> None:
        """Give back `n` slots taken earlier."""
        if n < 0 or self._free + n > self.capacity:
            raise ValueError(
                f"cannot give back {n} slots: {self._free} of {self.capacity} are free"
            )
        self._free += n
        self._serve()

    def _serve(self) -> None:
        while self._waiters:
            n, future = self._waiters[0]
            if future.done():  # cancelled meanwhile
                self._waiters.popleft()
                continue
            if self._free < n:
                return
            self._waiters.popleft()
            self._free -= n
            future.set_result(None)
