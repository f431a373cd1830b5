"""NATS core subjects (not JetStream): one connection per process, one server subscription
per channel with local subscribers.

nats-py reconnects by itself, for ever, `reconnect_wait` apart, and subscribes again to every
subject on the new connection; `ping` raises meanwhile. Publishing raises while disconnected
rather than letting nats-py queue it for later: a late broadcast is worse than none here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from townhall.platform.observability import get_logger
from townhall.platform.pubsub.fanout import FanoutPubSub
from townhall.platform.pubsub.options import PubSubOptions, check_channel, strip_query

log = get_logger("townhall.pubsub.nats")

# A channel becomes one subject token: '.' separates tokens, '*' and '>' are wildcards.
_ESCAPES = {"%": "%25", ".": "%2E", "*": "%2A", ">": "%3E"}


def subject_token(channel: str) -> str:
    return "".join(_ESCAPES.get(char, char) for char in channel)


class NatsPubSub(FanoutPubSub):
    def __init__(self, nc: Client, options: PubSubOptions) -> None:
        super().__init__(options)
        self.nc = nc
        self._subjects: dict[str, Any] = {}  # channel -> nats subscription
        self._prefix = f"{options.prefix}.pubsub."

    @classmethod
    async def open(cls, url: str, options: PubSubOptions) -> NatsPubSub:
        async def on_error(exc: Exception) -> None:
            log.warning("nats pub/sub error", error=str(exc) or type(exc).__name__)

        async def on_disconnected() -> None:
            log.warning("nats pub/sub disconnected")

        async def on_reconnected() -> None:
            log.info("nats pub/sub reconnected")

        nc = await asyncio.wait_for(
            nats.connect(
                strip_query(url),
                name=options.connection_name,
                connect_timeout=max(1, round(options.timeout)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=options.reconnect_wait,
                # A server that stops answering without closing the socket: noticed in ~30 s.
                ping_interval=10,
                max_outstanding_pings=3,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            ),
            options.timeout * 2,
        )
        return cls(nc, options)

    def _subject(self, channel: str) -> str:
        return self._prefix + subject_token(channel)

    async def publish(self, channel: str, data: bytes) -> None:
        check_channel(channel)
        if self._closed:
            raise RuntimeError("pub/sub is closed")
        if not self.nc.is_connected:
            raise ConnectionError("NATS is not connected (reconnecting)")
        await self.nc.publish(self._subject(channel), data)

    async def ping(self) -> None:
        if self._closed:
            raise RuntimeError("pub/sub is closed")
        if not self.nc.is_connected:
            raise ConnectionError("NATS is not connected (reconnecting)")
        await self.nc.flush(timeout=math.ceil(self.options.timeout))

    async def _join(self, channel: str) -> None:
        async def on_message(msg: Msg) -> None:
            self._deliver(channel, msg.data)

        self._subjects[channel] = await self.nc.subscribe(self._subject(channel), cb=on_message)
        if self.nc.is_connected:
            # Active on return: the server has the subscription once the flush comes back.
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=math.ceil(self.options.timeout))

    async def _leave(self, channel: str) -> None:
        subscription = self._subjects.pop(channel, None)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _shutdown(self) -> None:
        self._subjects.clear()
        with contextlib.suppress(Exception):
            await self.nc.close()
