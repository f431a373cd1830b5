"""Coalescing concurrent calls into batches: the group-commit pattern.

Many handlers running at once each want one row read or written. Sent one by one, every call
pays a round trip and the driver's per-statement cost; a `Batcher` sends them as one statement
instead. The first call goes at once, as a batch of one, so nothing waits when the system is
idle; calls made while a batch is under way queue up and go together as the next batch. The
busier the system, the bigger the batches, and the latency a call can add is one batch's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Outcome: TypeAlias = R | BaseException  # a result, or the error that call alone raises


class Batcher(Generic[T, R]):
    """`await batcher.submit(item)` returns the result `run` gives `item`.

    `run(items)` returns one outcome per item, in the items' order: a result, or an exception
    that `submit` raises for that item alone. If `run` raises, every call of that batch raises
    it. One batch runs at a time, of at most `max_size` items.
    """

    def __init__(
        self, run: Callable[[Sequence[T]], Awaitable[Sequence[Outcome[R]]]], *, max_size: int
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run = run
        self._max_size = max_size
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0  # how many batches ran, and with how many items in all
        self.items = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def idle(self) -> None:
        """Wait until no batch is under way (before closing what `run` uses)."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_size]
                del self._waiting[: self._max_size]
                self.batches += 1
                self.items += len(batch)
                try:
                    outcomes = await self._run([item for item, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(
                            f"a batch of {len(batch)} got {len(outcomes)} outcomes back"
                        )
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                except BaseException:  # cancelled: the calls waiting on it are cancelled too
                    for _, future in [*batch, *self._waiting]:
                        if not future.done():
                            future.cancel()
                    self._waiting.clear()
                    raise
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._runner = None
