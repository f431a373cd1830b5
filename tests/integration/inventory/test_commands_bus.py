"""Inventory's commands over the bus, in a running app: on SQLite + the in-process bus and on
PostgreSQL + RabbitMQ. The saga's commands are answered on `inventory` through the outbox,
keyed by the order, with the command's correlation id; a command delivered twice holds stock
once; a release twice gives back once; a confirmed order takes its stock; a reservation nobody
settles expires."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from support.app import running_app, settings_for
from support.notifications import bus_url, eventually, user
from support.services import create_database, database_name, drop_database, require
from townhall.inventory.adapters.tables import products, reservations
from townhall.inventory.events import (
    COMMAND_TOPIC,
    TOPIC,
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from townhall.orders.events import TOPIC as ORDERS_TOPIC
from townhall.orders.events import OrderConfirmed
from townhall.platform.messaging import Envelope

pytestmark = pytest.mark.timeout(120)

STACKS = {
    "sqlite+memory": ("sqlite", "memory"),
    "postgresql+rabbitmq": ("postgresql", "rabbitmq"),
}


@pytest.fixture(params=list(STACKS))
async def stack(request, tmp_path):
    database, bus = STACKS[request.param]
    if bus == "rabbitmq":
        require("RabbitMQ", "127.0.0.1", 5672)
    if database == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'i.db'}", bus_url(bus, "i")
        return
    name = database_name("i")
    url = await create_database(name)
    yield url, bus_url(bus, "i")
    await drop_database(name)


class Saga:
    """Stands in for the order saga: sends commands, hears inventory's answers."""

    def __init__(self, runtime) -> None:
        self.bus = runtime.platform.bus
        self.heard: list[Envelope] = []

    async def listen(self) -> None:
        async def hear(envelope: Envelope) -> None:
            self.heard.append(envelope)

        self.subscription = await self.bus.subscribe(TOPIC, "test.saga", hear)

    async def send(self, command, *, envelope: Envelope | None = None) -> Envelope:
        envelope = envelope or Envelope(
            type=command.type,
            key=command.order_id,
            payload=command.to_payload(),
            headers={"correlation_id": f"saga-{command.order_id}"},
        )
        await self.bus.publish(COMMAND_TOPIC, envelope)
        return envelope

    def answers(self, order_id: str) -> list[tuple[str, dict]]:
        return [(e.type, e.payload) for e in self.heard if e.key == order_id]

    async def answered(self, order_id: str, count: int) -> list[tuple[str, dict]]:
        async def enough():
            return len(self.answers(order_id)) >= count

        await eventually(enough)
        return self.answers(order_id)


@pytest.fixture
async def app(stack, tmp_path):
    database_url, bus = stack
    settings = settings_for(
        database_url,
        tmp_path,
        bus_url=bus,
        admins="boss",
        inventory_reservation_ttl=600,
        inventory_expiry_interval=0.1,
    )
    async with running_app(settings, ["identity", "inventory"]) as (client, runtime):
        _, boss = await user(client, "boss")
        for sku, stock in [("tee-m", 5), ("ticket-2027", 2)]:
            answer = await client.post(
                "/api/v1/products",
                headers=boss,
                json={
                    "sku": sku,
                    "name": sku,
                    "price_cents": 1000,
                    "currency": "EUR",
                    "stock": stock,
                },
            )
            assert answer.status_code == 201, answer.text
        saga = Saga(runtime)
        await saga.listen()
        yield client, runtime, saga, boss


async def stock_of(client, sku: str) -> int:
    answer = await client.get(f"/api/v1/products/{sku}")
    return int(answer.json()["stock"])


def order() -> str:
    return str(uuid.uuid4())


async def test_a_reservation_is_answered_with_the_saga_correlation(app):
    client, _, saga, _ = app
    order_id = order()
    sent = await saga.send(
        ReserveStock(order_id, (StockLine("tee-m", 2), StockLine("ticket-2027", 1)))
    )
    assert await saga.answered(order_id, 1) == [(StockReserved.type, {"order_id": order_id})]
    [answer] = [e for e in saga.heard if e.key == order_id]
    assert answer.headers["correlation_id"] == f"saga-{order_id}"
    assert answer.headers["causation_id"] == str(sent.id)
    assert (await stock_of(client, "tee-m"), await stock_of(client, "ticket-2027")) == (3, 1)


async def test_a_basket_short_of_stock_is_refused_naming_the_skus(app):
    client, _, saga, _ = app
    order_id = order()
    await saga.send(ReserveStock(order_id, (StockLine("tee-m", 2), StockLine("ticket-2027", 3))))
    assert await saga.answered(order_id, 1) == [
        (StockReservationFailed.type, {"order_id": order_id, "skus": ["ticket-2027"]})
    ]
    assert (await stock_of(client, "tee-m"), await stock_of(client, "ticket-2027")) == (5, 2)


async def test_a_duplicate_command_holds_stock_once(app):
    client, _, saga, _ = app
    order_id = order()
    command = ReserveStock(order_id, (StockLine("tee-m", 2),))
    first = await saga.send(command)
    await saga.send(command, envelope=first)  # the same message, redelivered
    await saga.send(command)  # the same command, sent again
    assert await saga.answered(order_id, 2) == [(StockReserved.type, {"order_id": order_id})] * 2
    await asyncio.sleep(0.3)  # the redelivered message is answered by nobody
    assert len(saga.answers(order_id)) == 2
    assert await stock_of(client, "tee-m") == 3


async def test_a_release_twice_gives_back_once(app):
    client, _, saga, _ = app
    order_id = order()
    await saga.send(ReserveStock(order_id, (StockLine("tee-m", 4),)))
    await saga.answered(order_id, 1)
    other = order()
    await saga.send(ReserveStock(other, (StockLine("tee-m", 1),)))
    await saga.answered(other, 1)
    await saga.send(ReleaseStock(order_id))
    await saga.send(ReleaseStock(order_id))
    answers = await saga.answered(order_id, 3)
    assert answers[1:] == [(StockReleased.type, {"order_id": order_id})] * 2
    assert await stock_of(client, "tee-m") == 4  # 5 - 1 held by the other order
    nothing = order()
    await saga.send(ReleaseStock(nothing))
    assert await saga.answered(nothing, 1) == [(StockReleased.type, {"order_id": nothing})]


async def test_a_confirmed_order_takes_its_stock_for_good(app):
    client, runtime, saga, _ = app
    database = runtime.platform.database
    order_id = order()
    await saga.send(ReserveStock(order_id, (StockLine("tee-m", 2),)))
    await saga.answered(order_id, 1)
    confirmed = OrderConfirmed(order_id, "buyer-1", 2000, "EUR")
    envelope = Envelope(type=confirmed.type, key=order_id, payload=confirmed.to_payload())
    await runtime.platform.bus.publish(ORDERS_TOPIC, envelope)
    await runtime.platform.bus.publish(ORDERS_TOPIC, envelope)  # redelivered

    async def status() -> str | None:
        query = sa.select(reservations.c.status).where(reservations.c.order_id == order_id)
        async with database.connect() as conn:
            return (await conn.execute(query)).scalar()

    async def committed() -> bool:
        return await status() == "committed"

    await eventually(committed)
    query = sa.select(products.c.on_hand, products.c.reserved).where(products.c.sku == "tee-m")
    async with database.connect() as conn:
        assert tuple((await conn.execute(query)).one()) == (3, 0)
    # A release after the confirmation (not one the saga sends) gives nothing back.
    await saga.send(ReleaseStock(order_id))
    await saga.answered(order_id, 2)
    assert await stock_of(client, "tee-m") == 3


async def test_a_reservation_nobody_settles_expires_and_is_released(stack, tmp_path):
    database_url, bus = stack
    settings = settings_for(
        database_url,
        tmp_path,
        bus_url=bus,
        admins="boss",
        inventory_reservation_ttl=0.5,
        inventory_expiry_interval=0.1,
    )
    async with running_app(settings, ["identity", "inventory"]) as (client, runtime):
        _, boss = await user(client, "boss")
        body = {"sku": "tee-m", "name": "T", "price_cents": 1, "currency": "EUR", "stock": 3}
        assert (await client.post("/api/v1/products", headers=boss, json=body)).status_code == 201
        saga = Saga(runtime)
        await saga.listen()
        order_id = order()
        await saga.send(ReserveStock(order_id, (StockLine("tee-m", 3),)))
        assert await saga.answered(order_id, 2) == [
            (StockReserved.type, {"order_id": order_id}),
            (StockReleased.type, {"order_id": order_id}),
        ]
        released = [e for e in saga.heard if e.type == StockReleased.type]
        assert released[0].headers["correlation_id"] == f"saga-{order_id}"
        assert await stock_of(client, "tee-m") == 3
        await saga.send(ReleaseStock(order_id))  # the saga's compensation, too late
        await saga.answered(order_id, 3)
        assert await stock_of(client, "tee-m") == 3
