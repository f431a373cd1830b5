"""Helpers for the saga participants' integration tests: the app running the participant
modules on a stack (a database and a bus), commands published on the bus, replies collected."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from support.app import running_app, settings_for
from support.notifications import bus_url
from support.services import create_database, database_name, drop_database, require
from townhall.bootstrap import Runtime
from townhall.platform.messaging import Envelope, MessageBus

STACKS = {
    "sqlite+memory": ("sqlite", "memory"),
    "postgresql+rabbitmq": ("postgresql", "rabbitmq"),
}


@asynccontextmanager
async def stack_urls(kind: str, tmp_path: Any) -> AsyncIterator[tuple[str, str]]:
    """(database URL, bus URL) of the stack `kind` (a key of `STACKS`), on fresh names."""
    database, bus = STACKS[kind]
    if bus == "rabbitmq":
        require("RabbitMQ", "127.0.0.1", 5672)
    if database == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", bus_url(bus, "p")
        return
    name = database_name("p")
    url = await create_database(name)
    yield url, bus_url(bus, "p")
    await drop_database(name)


@pytest.fixture(params=list(STACKS))
async def stack(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[tuple[str, str]]:
    """(database URL, bus URL): the test runs once on each stack of `STACKS`."""
    async with stack_urls(request.param, tmp_path) as urls:
        yield urls


class Replies:
    """What a module published on its topic, as a consumer group of this test sees it."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.received: list[Envelope] = []
        self._arrived = asyncio.Event()

    async def listen(self, topic: str) -> None:
        async def collect(envelope: Envelope) -> None:
            self.received.append(envelope)
            self._arrived.set()

        await self.bus.subscribe(topic, f"test.{uuid.uuid4().hex[:8]}", collect)

    async def at_least(self, count: int, *, within: float = 20.0) -> list[Envelope]:
        async def enough() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        try:
            await asyncio.wait_for(enough(), within)
        except TimeoutError:
            raise AssertionError(
                f"{count} replies expected in {within}s, got {self.received!r}"
            ) from None
        return list(self.received)

    def for_order(self, order_id: str) -> list[Envelope]:
        return [e for e in self.received if e.key == order_id]


@asynccontextmanager
async def participants(
    stack: tuple[str, str], tmp_path: Any, topic: str, **settings: Any
) -> AsyncIterator[tuple[Runtime, Replies]]:
    """The payments and shipping modules running on `stack`, and the replies on `topic`."""
    database_url, bus = stack
    configured = settings_for(database_url, tmp_path, bus_url=bus, **settings)
    async with running_app(configured, ["payments", "shipping"]) as (_, runtime):
        replies = Replies(runtime.platform.bus)
        await replies.listen(topic)
        yield runtime, replies


async def send(
    runtime: Runtime, topic: str, command: Any, *, envelope: Envelope | None = None
) -> Envelope:
    """Publish `command` on `topic` as a saga would (keyed by order, with a correlation id);
    `envelope` publishes that one again (a redelivery)."""
    if envelope is None:
        envelope = Envelope(
            type=command.type,
            key=command.order_id,
            payload=command.to_payload(),
            headers={"correlation_id": f"saga-{command.order_id}"},
        )
    await runtime.platform.bus.publish(topic, envelope)
    return envelope
