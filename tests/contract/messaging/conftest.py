"""The bus contract suite runs once per adapter, on the real broker, under a fresh prefix."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from support.services import AMQP_URL, NATS_URL, REDIS_URL, RUN_ID, require
from townhall.platform.messaging import connect

ADAPTERS = {
    "memory": ("memory://", None),
    "redis": (REDIS_URL, ("Redis", "127.0.0.1", 6379)),
    "rabbitmq": (AMQP_URL, ("RabbitMQ", "127.0.0.1", 5672)),
    "nats": (NATS_URL, ("NATS", "127.0.0.1", 4222)),
}
# Short leases and backoffs keep the suite fast; production defaults are seconds.
TUNING = "partitions=4&lease_ttl=1.2&backoff_base=0.05&backoff_cap=0.5&ack_wait=2&queue_expires=60"
_counter = itertools.count()


@pytest.fixture(params=list(ADAPTERS))
async def bus_url(request) -> AsyncIterator[str]:
    base, service = ADAPTERS[request.param]
    if service:
        require(*service)
    prefix = f"t{RUN_ID}x{next(_counter)}"
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}prefix={prefix}&{TUNING}"
    yield url
    bus = await connect(url)
    try:
        await bus.transport.delete_everything()  # type: ignore[attr-defined]
    except AttributeError:
        pass
    finally:
        await bus.close()
