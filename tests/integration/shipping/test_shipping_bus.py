"""Shipping over the bus, as the saga drives it: a command envelope on `shipping.commands`, the
event out on `shipping` with the saga's correlation id; orders' `OrderConfirmed` dispatches the
parcel once; on SQLite + the in-process bus and on PostgreSQL + RabbitMQ, with the carrier
simulator refusing what the settings list."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from support.databases import outbox_envelopes
from support.participants import STACKS, participants, send, stack_urls
from townhall.orders import events as orders
from townhall.shipping.adapters.tables import shipments
from townhall.shipping.events import (
    COMMAND_TOPIC,
    TOPIC,
    Address,
    CancelShipment,
    CreateShipment,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentFailed,
    ShippedLine,
)

pytestmark = pytest.mark.timeout(90)

HOME = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB")
REFUSED_POSTCODE = Address("Bob", "1 Rue X", "Paris", "75 001", "FR")


@pytest.fixture(params=list(STACKS))
async def stack(request, tmp_path):
    async with stack_urls(request.param, tmp_path) as urls:
        yield urls


def create_of(order_id: str, address: Address = HOME) -> CreateShipment:
    return CreateShipment(order_id, address, (ShippedLine("tee-m", 2),))


async def test_one_shipment_per_order_created_once_cancelled_once_and_dispatched_once(
    stack, tmp_path
):
    async with participants(stack, tmp_path, TOPIC) as (runtime, replies):
        command = await send(runtime, COMMAND_TOPIC, create_of("o-1"))
        await send(runtime, COMMAND_TOPIC, create_of("o-1"))  # the same command sent again
        first, second = await replies.at_least(2)
        assert first.headers["correlation_id"] == "saga-o-1"
        assert first.headers["causation_id"] == str(command.id)
        created = ShipmentCreated.from_payload(first.payload)
        assert ShipmentCreated.from_payload(second.payload) == created

        await send(runtime, COMMAND_TOPIC, CancelShipment("o-1", created.shipment_id))
        replies_now = await replies.at_least(3)
        assert replies_now[2].type == ShipmentCancelled.type
        async with runtime.platform.database.connect() as conn:
            query = sa.select(shipments).where(shipments.c.order_id == "o-1")
            row = (await conn.execute(query)).one()
        assert (row.status, row.shipment_id) == ("cancelled", created.shipment_id)

        # Another order, confirmed: its parcel is dispatched, once, whatever the copies.
        await send(runtime, COMMAND_TOPIC, create_of("o-3"))
        await replies.at_least(4)
        [booked] = replies.for_order("o-3")
        shipment_id = ShipmentCreated.from_payload(booked.payload).shipment_id
        confirmed = await send(
            runtime, orders.TOPIC, orders.OrderConfirmed("o-3", "buyer-3", 3000, "EUR")
        )
        await replies.at_least(5)
        _, dispatched = replies.for_order("o-3")
        event = ShipmentDispatched.from_payload(dispatched.payload)
        assert (event.order_id, event.shipment_id) == ("o-3", shipment_id)
        assert event.buyer_id == "buyer-3"
        assert event.tracking.startswith("SIM")
        assert dispatched.headers["correlation_id"] == "saga-o-3"
        assert dispatched.headers["causation_id"] == str(confirmed.id)

        # The group's own handler, given the event again (a redelivery) and a copy of it in
        # another envelope: both return once handled, and neither publishes a second event.
        [spec] = [c for c in runtime.consumers if c.group == "shipping.orders"]
        handler = spec.handler_factory()
        await handler(confirmed)
        await handler(orders_copy(confirmed))
        database = runtime.platform.database
        published = [e for _, e in await outbox_envelopes(database) if e.key == "o-3"]
        assert [e.type for e in published] == [ShipmentCreated.type, ShipmentDispatched.type]
        async with database.connect() as conn:
            query = sa.select(shipments).where(shipments.c.order_id == "o-3")
            row = (await conn.execute(query)).one()
        assert (row.status, row.tracking) == ("created", event.tracking)
        assert row.dispatched_at is not None


async def test_an_address_the_carrier_refuses_comes_out_as_shipment_failed(stack, tmp_path):
    settings = {"shipping_refuse_countries": "XX, YY", "shipping_refuse_postcodes": "75001"}
    async with participants(stack, tmp_path, TOPIC, **settings) as (runtime, replies):
        await send(runtime, COMMAND_TOPIC, create_of("o-2", REFUSED_POSTCODE))
        [reply] = await replies.at_least(1)
        assert ShipmentFailed.from_payload(reply.payload) == ShipmentFailed(
            "o-2", "undeliverable_address"
        )


def orders_copy(envelope):
    return type(envelope)(
        type=envelope.type, key=envelope.key, payload=envelope.payload, headers=envelope.headers
    )
