"""Catch-up subscriptions: from a durable checkpoint through history in batches, then live.

Each batch is handled in one transaction that also moves the checkpoint, with the checkpoint
row locked: a projection that writes through the connection it is handed is applied exactly
once per event even across crashes, and two processes running the same subscription take
turns instead of applying a batch twice. Live events wake the loop through the store's
signal (LISTEN/NOTIFY on PostgreSQL, an in-process signal on SQLite); polling every
`poll_interval` seconds catches anything a signal missed, such as another process's appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol

from townhall.platform.eventstore.ports import Handler, RecordedEvent, Transaction

log = logging.getLogger(__name__)


class Notifier:
    """Wakes every waiter registered before `notify()`; a waiter registers, then reads."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def register(self) -> asyncio.Event:
        signal = asyncio.Event()
        self._waiters.add(signal)
        return signal

    def discard(self, signal: asyncio.Event) -> None:
        self._waiters.discard(signal)

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for signal in waiters:
            signal.set()


class SubscriptionSource(Protocol):
    """What a subscription needs from a store beyond the EventStore port."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def read_all(
        self, *, from_position: int = 0, limit: int = 1000, conn: Transaction | None = None
    ) -> list[RecordedEvent]: ...

    async def lock_checkpoint(self, name: str, conn: Transaction) -> int: ...

    async def save_checkpoint(self, name: str, position: int, conn: Transaction) -> None: ...

    def appended_signal(self) -> asyncio.Event: ...

    async def wait_for_append(self, signal: asyncio.Event, max_wait: float) -> None: ...


class Subscription:
    """A named, durable, catch-up subscription. `async with sub:` runs it in the background."""

    def __init__(
        self,
        source: SubscriptionSource,
        name: str,
        handler: Handler,
        *,
        batch: int = 500,
        poll_interval: float = 1.0,
        retry_delay: float = 1.0,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.name = name
        self.batch = batch
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.position = 0  # the last position this subscription handled (as far as it knows)
        self._source = source
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()

    async def handle_next_batch(self) -> int:
        """Handle the next batch after the checkpoint; return how many events it held."""
        peeked = await self._source.read_all(from_position=self.position, limit=self.batch)
        if not peeked:
            return 0
        async with self._source.transaction() as conn:
            checkpoint = await self._source.lock_checkpoint(self.name, conn)
            if checkpoint == self.position:
                # Events below what a reader has seen never appear later, so the peeked batch
                # is still exactly the events after the checkpoint.
                events = peeked
            else:  # another process moved the checkpoint: read after it, under the lock
                events = await self._source.read_all(
                    from_position=checkpoint, limit=self.batch, conn=conn
                )
            if events:
                await self._handler(events, conn)
                await self._source.save_checkpoint(self.name, events[-1].position, conn)
        self.position = events[-1].position if events else checkpoint
        async with self._progress:
            self._progress.notify_all()
        return len(events)

    async def catch_up(self) -> int:
        """Handle batches until no event is left after the checkpoint; return the count."""
        await self._load_position()
        handled = 0
        while count := await self.handle_next_batch():
            handled += count
        return handled

    async def _load_position(self) -> None:
        async with self._source.transaction() as conn:
            self.position = await self._source.lock_checkpoint(self.name, conn)

    async def run(self) -> None:
        """Catch up, then follow live events until cancelled."""
        while True:
            try:
                await self._load_position()
                while True:
                    signal = self._source.appended_signal()
                    if not await self.handle_next_batch():
                        await self._source.wait_for_append(signal, self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("eventstore: subscription %s failed; retrying", self.name)
                await asyncio.sleep(self.retry_delay)

    async def wait_for(self, position: int, max_wait: float = 10.0) -> None:
        """Wait until this subscription has handled everything up to `position`."""
        async with asyncio.timeout(max_wait), self._progress:
            await self._progress.wait_for(lambda: self.position >= position)

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"subscription:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
