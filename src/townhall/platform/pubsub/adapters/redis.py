"""Redis Pub/Sub: one connection per process carries every channel subscription (plus a pool
for publishes and pings).

A listener task reads that connection. When it breaks (server restart, killed connection),
the listener opens a new one and subscribes again to every channel that has local
subscribers, waiting `reconnect_wait` doubling up to 2 s between attempts; `ping` raises until
that is done. Messages published meanwhile are lost (at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from townhall.platform.observability import get_logger
from townhall.platform.pubsub.fanout import FanoutPubSub
from townhall.platform.pubsub.options import PubSubOptions, check_channel, strip_query

log = get_logger("townhall.pubsub.redis")

RECONNECT_WAIT_CAP = 2.0


class RedisPubSub(FanoutPubSub):
    def __init__(self, url: str, options: PubSubOptions) -> None:
        super().__init__(options)
        name = options.connection_name
        base = strip_query(url)
        timeout = options.timeout
        # Typed loosely: redis-py's reply types are unions of every decoding mode.
        self.client: Any = aioredis.Redis.from_url(
            base, client_name=name, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        # The listener's connection is never retried by redis-py: a break surfaces to the
        # listener, which reconnects and resubscribes itself. Reads on it block (no timeout).
        self.listener_client: Any = aioredis.Redis.from_url(
            base, client_name=name, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._pubsub: Any = None  # the listener's live PubSub, None while reconnecting
        self._commands = asyncio.Lock()  # one SUBSCRIBE/UNSUBSCRIBE writer at a time
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._up = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        # Always subscribed, so the connection stays in subscribe mode with no channels.
        self._control = self._name("__control__")

    @classmethod
    async def open(cls, url: str, options: PubSubOptions) -> RedisPubSub:
        pubsub = cls(url, options)
        try:
            await pubsub.client.ping()
            pubsub._listener = asyncio.create_task(pubsub._listen(), name="pubsub:redis")
            await asyncio.wait_for(pubsub._up.wait(), options.timeout)
        except BaseException:
            await pubsub.close()
            raise
        return pubsub

    def _name(self, channel: str) -> str:
        return f"{self.options.prefix}:pubsub:{channel}"

    async def publish(self, channel: str, data: bytes) -> None:
        check_channel(channel)
        if self._closed:
            raise RuntimeError("pub/sub is closed")
        await self.client.publish(self._name(channel), data)

    async def ping(self) -> None:
        if self._closed:
            raise RuntimeError("pub/sub is closed")
        if not self._up.is_set():
            raise ConnectionError("Redis pub/sub is reconnecting")
        try:
            await self.client.ping()
        except RedisConnectionError:
            # A pooled connection from before a server restart fails once; the retry gets a
            # fresh one, so a server that is back reads as up.
            await self.client.ping()

    async def _listen(self) -> None:
        wait = self.options.reconnect_wait
        prefix_length = len(self._name(""))
        while not self._closed:
            pubsub = self.listener_client.pubsub()
            try:
                async with self._commands:
                    await pubsub.subscribe(self._control)
                    self._pubsub = pubsub
                    channels = [self._name(channel) for channel in sorted(self._remote)]
                    if channels:
                        await pubsub.subscribe(*channels)
                self._up.set()
                if wait != self.options.reconnect_wait:
                    log.info("redis pub/sub reconnected", channels=len(channels))
                wait = self.options.reconnect_wait
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    kind, name = message["type"], message["channel"]
                    if kind == "message":
                        self._deliver(name[prefix_length:].decode(), message["data"])
                    elif kind == "subscribe":
                        future = self._confirmations.pop(name, None)
                        if future is not None and not future.done():
                            future.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._up.clear()
                self._pubsub = None
                self._release_confirmations()
                log.warning("redis pub/sub connection lost", error=str(exc) or type(exc).__name__)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_WAIT_CAP)

    def _release_confirmations(self) -> None:
        for future in self._confirmations.values():
            if not future.done():
                future.set_result(None)
        self._confirmations.clear()

    async def _join(self, channel: str) -> None:
        name = self._name(channel)
        async with self._commands:
            if self._pubsub is None:
                return  # the listener subscribes to it once it has reconnected
            confirmed = asyncio.get_running_loop().create_future()
            self._confirmations[name.encode()] = confirmed
            try:
                await self._pubsub.subscribe(name)
            except Exception:
                self._confirmations.pop(name.encode(), None)
                return  # the connection broke: the listener restores every channel
        # Active on return: another connection's publish reaches it from now on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(confirmed, self.options.timeout)

    async def _leave(self, channel: str) -> None:
        async with self._commands:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(self._name(channel))

    async def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None
        self._release_confirmations()
        await self.listener_client.aclose()
        await self.client.aclose()
