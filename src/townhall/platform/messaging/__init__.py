"""The message bus: one contract on an in-process bus, Redis Streams, RabbitMQ and NATS JetStream.

bus = await connect("redis://127.0.0.1:6379/0?prefix=townhall")
await bus.publish("orders", Envelope(type="orders.OrderPlaced", key="order-42", payload={}))
sub = await bus.subscribe("orders", group="shipping", handler=handle, prefetch=100)
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from townhall.platform.messaging.engine import PartitionedBus
from townhall.platform.messaging.envelope import Envelope, MalformedEnvelope
from townhall.platform.messaging.metrics import bus_metrics
from townhall.platform.messaging.ports import (
    ConsumerSpec,
    DeadLetter,
    Handler,
    MessageBus,
    Subscription,
)
from townhall.platform.messaging.retry import Backoff, Retry
from townhall.platform.messaging.transport import BusOptions, Transport

__all__ = [
    "Backoff",
    "BusOptions",
    "ConsumerSpec",
    "DeadLetter",
    "Envelope",
    "Handler",
    "MalformedEnvelope",
    "MessageBus",
    "PartitionedBus",
    "Retry",
    "Subscription",
    "connect",
]

SCHEMES = ("memory", "redis", "rediss", "amqp", "amqps", "nats", "tls")


async def connect(
    url: str, *, registry: CollectorRegistry | None = None, **options: Any
) -> PartitionedBus:
    """A bus for `url` (memory:// | redis:// | amqp:// | nats://). Query parameters and
    keyword `options` tune it: prefix, partitions, lease_ttl, backoff_base, backoff_cap."""
    scheme = url.split("://", 1)[0].lower()
    parsed = BusOptions.from_url(url, **options)
    transport: Transport
    if scheme == "memory":
        from townhall.platform.messaging.adapters.memory import MemoryTransport

        transport = MemoryTransport(parsed)
    elif scheme in ("redis", "rediss"):
        from townhall.platform.messaging.adapters.redis import RedisTransport

        transport = await RedisTransport.open(url, parsed)
    elif scheme in ("amqp", "amqps"):
        from townhall.platform.messaging.adapters.rabbitmq import RabbitTransport

        transport = await RabbitTransport.open(url, parsed)
    elif scheme in ("nats", "tls"):
        from townhall.platform.messaging.adapters.nats import NatsTransport

        transport = await NatsTransport.open(url, parsed)
    else:
        raise ValueError(f"no bus adapter for {scheme!r}; use one of {', '.join(SCHEMES)}")
    return PartitionedBus(transport, bus_metrics(registry))
