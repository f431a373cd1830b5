"""Ephemeral pub/sub for the chat relay, presence and typing: in-process, Redis, NATS core.

pubsub = await connect("redis://127.0.0.1:6379/0?prefix=townhall")
subscription = await pubsub.subscribe("room.42")           # or subscribe(channel, callback)
await pubsub.publish("room.42", b"hello")
async for message in subscription: ...                     # Message(channel, data, ...)
"""

from __future__ import annotations

from typing import Any

from townhall.platform.pubsub.options import PubSubOptions
from townhall.platform.pubsub.ports import Callback, Message, PubSub, Subscription

__all__ = ["SCHEMES", "Callback", "Message", "PubSub", "PubSubOptions", "Subscription", "connect"]

SCHEMES = ("memory", "redis", "rediss", "nats", "tls")


async def connect(url: str, **options: Any) -> PubSub:
    """The pub/sub `url` names (memory:// | redis:// | nats://). Query parameters and keyword
    `options` tune it: prefix, buffer, timeout, reconnect_wait, connection_name."""
    scheme = url.split("://", 1)[0].lower()
    parsed = PubSubOptions.from_url(url, **options)
    if scheme == "memory":
        from townhall.platform.pubsub.adapters.memory import MemoryPubSub

        return MemoryPubSub(parsed)
    if scheme in ("redis", "rediss"):
        from townhall.platform.pubsub.adapters.redis import RedisPubSub

        return await RedisPubSub.open(url, parsed)
    if scheme in ("nats", "tls"):
        from townhall.platform.pubsub.adapters.nats import NatsPubSub

        return await NatsPubSub.open(url, parsed)
    raise ValueError(f"no pub/sub adapter for {scheme!r}; use one of {', '.join(SCHEMES)}")
