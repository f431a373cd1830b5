"""Redis Streams adapter tests: a bus on the real Redis under a fresh prefix, removed after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from support.services import REDIS_URL, RUN_ID, require
from townhall.platform.messaging import connect
from townhall.platform.messaging.engine import PartitionedBus

OpenBus = Callable[[str, str], Awaitable[PartitionedBus]]


@pytest.fixture
async def redis_bus() -> AsyncIterator[OpenBus]:
    """`await redis_bus(label, options)`: a Redis bus under prefix t{RUN_ID}{label}."""
    opened: list[PartitionedBus] = []

    async def open_bus(label: str, options: str) -> PartitionedBus:
        require("Redis", "127.0.0.1", 6379)
        bus = await connect(f"{REDIS_URL}?prefix=t{RUN_ID}{label}&{options}")
        assert isinstance(bus, PartitionedBus)
        opened.append(bus)
        return bus

    yield open_bus
    for bus in opened:
        await bus.transport.delete_everything()  # type: ignore[attr-defined]
        await bus.close()
