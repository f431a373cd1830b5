"""Adapter tests on the real brokers: a bus under a fresh prefix, its queues or streams
removed after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from support.services import AMQP_URL, REDIS_URL, RUN_ID, require
from townhall.platform.messaging import connect
from townhall.platform.messaging.engine import PartitionedBus

OpenBus = Callable[[str, str], Awaitable[PartitionedBus]]


async def _buses(base: str, service: tuple[str, str, int]) -> AsyncIterator[OpenBus]:
    opened: list[PartitionedBus] = []

    async def open_bus(label: str, options: str) -> PartitionedBus:
        require(*service)
        bus = await connect(f"{base}?prefix=t{RUN_ID}{label}&{options}")
        assert isinstance(bus, PartitionedBus)
        opened.append(bus)
        return bus

    yield open_bus
    for bus in opened:
        await bus.transport.delete_everything()  # type: ignore[attr-defined]
        await bus.close()


@pytest.fixture
async def redis_bus() -> AsyncIterator[OpenBus]:
    """`await redis_bus(label, options)`: a Redis bus under prefix t{RUN_ID}{label}."""
    async for open_bus in _buses(REDIS_URL, ("Redis", "127.0.0.1", 6379)):
        yield open_bus


@pytest.fixture
async def rabbit_bus() -> AsyncIterator[OpenBus]:
    """`await rabbit_bus(label, options)`: a RabbitMQ bus under prefix t{RUN_ID}{label}."""
    async for open_bus in _buses(AMQP_URL, ("RabbitMQ", "127.0.0.1", 5672)):
        yield open_bus
