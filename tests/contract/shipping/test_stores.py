"""One contract for shipping's store ports (`ShipmentStore`, `ShippingEvents`, `HandledCommands`),
run against the SQL adapters on SQLite and on PostgreSQL and against the in-memory fakes the
unit tests use: the fakes behave as the real adapters do, or this fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import townhall.shipping
from support.databases import migrated_database, outbox_envelopes
from support.participant_fakes import (
    MemoryHandledCommands,
    MemoryShipments,
    MemoryTransactions,
    ShippingEventsFake,
)
from townhall.shipping.adapters.sql import OutboxShippingEvents, SqlHandledCommands, SqlShipments
from townhall.shipping.domain import Shipment, ShipmentStatus
from townhall.shipping.events import TOPIC, ShipmentCreated, ShipmentFailed
from townhall.shipping.ports import HandledCommands, Received, ShipmentStore, ShippingEvents

pytestmark = pytest.mark.timeout(60)

MIGRATIONS = Path(townhall.shipping.__file__).parent / "migrations"
MESSAGE_ID = "0190f3c2-0000-7000-8000-000000000001"


@dataclass
class Adapters:
    transactions: Any
    shipments: ShipmentStore
    events: ShippingEvents
    handled: HandledCommands
    # (topic, type, key, payload, correlation id, causation id) of what was published, in order
    published: Callable[[], Awaitable[list[tuple[Any, ...]]]]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def adapters(request, tmp_path) -> AsyncIterator[Adapters]:
    if request.param == "memory":
        events = ShippingEventsFake()

        async def published_in_memory() -> list[tuple[Any, ...]]:
            return [
                (
                    TOPIC,
                    event.type,
                    event.order_id,
                    event.to_payload(),
                    cause.correlation_id,
                    cause.message_id,
                )
                for event, cause in events.published
            ]

        yield Adapters(
            MemoryTransactions(),
            MemoryShipments(),
            events,
            MemoryHandledCommands(),
            published_in_memory,
        )
        return
    async with migrated_database(request.param, tmp_path, [MIGRATIONS]) as database:

        async def published_in_outbox() -> list[tuple[Any, ...]]:
            envelopes = await outbox_envelopes(database)
            return [
                (
                    topic,
                    e.type,
                    e.key,
                    e.payload,
                    e.headers["correlation_id"],
                    e.headers["causation_id"],
                )
                for topic, e in envelopes
            ]

        yield Adapters(
            database,
            SqlShipments(),
            OutboxShippingEvents(),
            SqlHandledCommands("shipping.commands"),
            published_in_outbox,
        )


def shipment(order_id: str = "o-1", **changes: Any) -> Shipment:
    return replace(Shipment(order_id, ShipmentStatus.CREATED, "shp_1"), **changes)


async def get(adapters: Adapters, order_id: str) -> Shipment | None:
    async with adapters.transactions.connect() as conn:
        return await adapters.shipments.get(conn, order_id)


async def test_an_order_without_a_shipment_has_none(adapters):
    assert await get(adapters, "o-404") is None


async def test_an_added_shipment_reads_back_as_it_was_written(adapters):
    written = shipment()
    async with adapters.transactions.transaction() as conn:
        assert await adapters.shipments.add(conn, written)
        assert await adapters.shipments.get(conn, "o-1") == written  # seen in its transaction
    assert await get(adapters, "o-1") == written
    failed = shipment("o-2", status=ShipmentStatus.FAILED, shipment_id=None, reason="nope")
    async with adapters.transactions.transaction() as conn:
        assert await adapters.shipments.add(conn, failed)
    assert await get(adapters, "o-2") == failed


async def test_a_second_shipment_for_one_order_is_refused_and_the_first_stays(adapters):
    first = shipment()
    async with adapters.transactions.transaction() as conn:
        assert await adapters.shipments.add(conn, first)
    async with adapters.transactions.transaction() as conn:
        assert not await adapters.shipments.add(conn, shipment(shipment_id="shp_2"))
    assert await get(adapters, "o-1") == first


async def test_an_update_replaces_the_orders_shipment(adapters):
    async with adapters.transactions.transaction() as conn:
        await adapters.shipments.add(conn, shipment())
    async with adapters.transactions.transaction() as conn:
        await adapters.shipments.update(conn, shipment().cancelled())
    stored = await get(adapters, "o-1")
    assert stored == Shipment("o-1", ShipmentStatus.CANCELLED, "shp_1")


async def test_a_rolled_back_transaction_keeps_no_shipment_no_event_and_no_handled_message(
    adapters,
):
    with pytest.raises(RuntimeError):
        async with adapters.transactions.transaction() as conn:
            assert await adapters.handled.first_time(conn, MESSAGE_ID)
            await adapters.shipments.add(conn, shipment())
            await adapters.events.publish(
                conn, ShipmentFailed("o-1", "nope"), Received(MESSAGE_ID, "saga-1")
            )
            raise RuntimeError("the handler failed")
    assert await get(adapters, "o-1") is None
    assert await adapters.published() == []
    async with adapters.transactions.transaction() as conn:
        assert await adapters.handled.first_time(conn, MESSAGE_ID)


async def test_an_event_goes_out_on_the_shipping_topic_keyed_by_order_with_the_saga_ids(adapters):
    event = ShipmentCreated("o-1", "shp_1")
    async with adapters.transactions.transaction() as conn:
        await adapters.events.publish(conn, event, Received(MESSAGE_ID, "saga-1"))
    assert await adapters.published() == [
        (TOPIC, event.type, "o-1", event.to_payload(), "saga-1", MESSAGE_ID)
    ]


async def test_a_message_is_handled_the_first_time_only(adapters):
    async with adapters.transactions.transaction() as conn:
        assert await adapters.handled.first_time(conn, MESSAGE_ID)
        assert not await adapters.handled.first_time(conn, MESSAGE_ID)
    async with adapters.transactions.transaction() as conn:
        assert not await adapters.handled.first_time(conn, MESSAGE_ID)
        assert await adapters.handled.first_time(conn, "0190f3c2-0000-7000-8000-000000000002")


async def test_a_created_shipment_is_marked_dispatched_once_and_only_a_created_one(adapters):
    failed = shipment("o-2", status=ShipmentStatus.FAILED, shipment_id=None, reason="nope")
    async with adapters.transactions.transaction() as conn:
        await adapters.shipments.add(conn, shipment())
        await adapters.shipments.add(conn, failed)
    async with adapters.transactions.transaction() as conn:
        assert await adapters.shipments.mark_dispatched(conn, "o-1", "SIM1")
        assert (await adapters.shipments.get(conn, "o-1")).tracking == "SIM1"  # in its transaction
        assert not await adapters.shipments.mark_dispatched(conn, "o-1", "SIM2")
    async with adapters.transactions.transaction() as conn:
        assert not await adapters.shipments.mark_dispatched(conn, "o-1", "SIM3")
        assert not await adapters.shipments.mark_dispatched(conn, "o-2", "SIM4")
        assert not await adapters.shipments.mark_dispatched(conn, "o-404", "SIM5")
    assert await get(adapters, "o-1") == shipment(tracking="SIM1")
    assert await get(adapters, "o-2") == failed
    async with adapters.transactions.transaction() as conn:
        await adapters.shipments.add(conn, shipment("o-3"))
    with pytest.raises(RuntimeError):
        async with adapters.transactions.transaction() as conn:
            assert await adapters.shipments.mark_dispatched(conn, "o-3", "SIM6")
            raise RuntimeError("the handler failed")
    assert (await get(adapters, "o-3")).tracking is None
