"""What every adapter shares: the process's subscribers per channel, each with a bounded
buffer, over one server-side subscription per channel.

An adapter subclasses `FanoutPubSub` and provides `publish`, `ping`, `_join` / `_leave` (the
server-side subscription of one channel, made for its first local subscriber and dropped with
its last) and `_shutdown`; it hands what arrives to `_deliver`, which never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from townhall.platform.observability import get_logger
from townhall.platform.pubsub.options import PubSubOptions, check_channel
from townhall.platform.pubsub.ports import Callback, Message

log = get_logger("townhall.pubsub")


class BufferedSubscription:
    """A subscriber's bounded buffer. Full, it drops its OLDEST message for the new one (the
    newest state matters most to presence and typing; chat clients refill gaps from history)
    and counts it in `dropped` and in the next message's `dropped_before`."""

    def __init__(
        self,
        channel: str,
        limit: int,
        on_unsubscribe: Callable[[BufferedSubscription], Awaitable[None]],
        callback: Callback | None = None,
    ) -> None:
        self.channel = channel
        self.dropped = 0
        self._limit = limit
        self._items: deque[Message] = deque()
        self._gap = 0  # dropped right before the oldest buffered message
        self._wakeup = asyncio.Event()
        self._closed = False
        self._on_unsubscribe = on_unsubscribe
        self._task: asyncio.Task[None] | None = None
        if callback is not None:
            self._task = asyncio.create_task(self._run(callback), name=f"pubsub:{channel}")

    def offer(self, message: Message) -> None:
        if self._closed:
            return
        if len(self._items) >= self._limit:
            self._items.popleft()
            self.dropped += 1
            self._gap += 1
        self._items.append(message)
        self._wakeup.set()

    async def next(self) -> Message | None:
        """The next message, waiting for one; None once unsubscribed or closed."""
        while not self._items:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        message = self._items.popleft()
        if self._gap:
            message, self._gap = replace(message, dropped_before=self._gap), 0
        return message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while (message := await self.next()) is not None:
            yield message

    async def _run(self, callback: Callback) -> None:
        while (message := await self.next()) is not None:
            try:
                await callback(message)
            except Exception:
                log.exception("pub/sub callback failed", channel=self.channel)

    def close(self) -> None:
        """End delivery locally (no server round trip): what close() does to every one."""
        self._closed = True
        self._items.clear()
        self._wakeup.set()

    async def unsubscribe(self) -> None:
        if self._closed:
            return
        self.close()
        await self._on_unsubscribe(self)
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # a callback blocked for ever must not block unsubscribe
            with contextlib.suppress(asyncio.CancelledError):
                await task


class FanoutPubSub:
    def __init__(self, options: PubSubOptions) -> None:
        self.options = options
        self._subscribers: dict[str, set[BufferedSubscription]] = {}
        self._remote: set[str] = set()  # channels subscribed on the server
        self._membership = asyncio.Lock()
        self._closed = False

    async def subscribe(
        self, channel: str, callback: Callback | None = None, *, buffer: int | None = None
    ) -> BufferedSubscription:
        check_channel(channel)
        if self._closed:
            raise RuntimeError("pub/sub is closed")
        limit = self.options.buffer if buffer is None else buffer
        if limit < 1:
            raise ValueError("buffer must be at least 1")
        subscription = BufferedSubscription(channel, limit, self._forget, callback)
        self._subscribers.setdefault(channel, set()).add(subscription)
        await self._reconcile(channel)
        return subscription

    @property
    def channels(self) -> frozenset[str]:
        """The channels this process is subscribed to on the server."""
        return frozenset(self._remote)

    def _deliver(self, channel: str, data: bytes) -> None:
        message = Message(channel, data)
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.offer(message)

    async def _forget(self, subscription: BufferedSubscription) -> None:
        subscribers = self._subscribers.get(subscription.channel)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.channel]
        if not self._closed:
            await self._reconcile(subscription.channel)

    async def _reconcile(self, channel: str) -> None:
        # Serialised, so a subscribe racing the last unsubscribe of a channel cannot leave
        # the server's subscription out of step with the local subscribers.
        async with self._membership:
            wanted = channel in self._subscribers
            if wanted and channel not in self._remote:
                self._remote.add(channel)
                await self._join(channel)
            elif not wanted and channel in self._remote:
                self._remote.discard(channel)
                await self._leave(channel)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        subscriptions = [s for subs in self._subscribers.values() for s in subs]
        self._subscribers.clear()
        for subscription in subscriptions:
            await subscription.unsubscribe()
        self._remote.clear()
        await self._shutdown()

    async def _join(self, channel: str) -> None:
        """Subscribe to `channel` on the server (idempotent; never raises for a down server:
        the channel is in `_remote`, restored on reconnect)."""

    async def _leave(self, channel: str) -> None:
        """Unsubscribe from `channel` on the server (never raises for a down server)."""

    async def _shutdown(self) -> None:
        """Close the connection."""
