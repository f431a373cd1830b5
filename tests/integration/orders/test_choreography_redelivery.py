"""The choreography's participants under redelivery and reordering, on SQLite and PostgreSQL:
inventory, payments and shipping handle each event once however often and in whatever order
it comes (an event before the one it depends on, a cancel before the placement), answer
through their outboxes, and leave the orchestration's orders alone. The handlers are driven
directly (as the bus would, one delivery at a time), so what each one published is counted
exactly in the outbox."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

import townhall.inventory
import townhall.payments
import townhall.shipping
from support.services import create_database, database_name, drop_database
from townhall.inventory.adapters.outbox import OutboxMessages
from townhall.inventory.adapters.sql import (
    SqlChoreographedOrders,
    SqlProducts,
    SqlReservations,
)
from townhall.inventory.choreography import StockChoreography
from townhall.inventory.ports import Cause
from townhall.inventory.service import Catalogue, Stock
from townhall.orders import events as orders
from townhall.payments.adapters.simulator import SimulatedPaymentGateway
from townhall.payments.adapters.sql import (
    OutboxPaymentEvents,
    SqlHandledCommands,
    SqlPayments,
    SqlVault,
)
from townhall.payments.choreography import PaymentChoreography
from townhall.payments.ports import Received as PaymentReceived
from townhall.payments.service import PaymentService
from townhall.platform.clock import SystemClock
from townhall.platform.db import Database
from townhall.platform.ids import new_id_str
from townhall.platform.migrations import migrate
from townhall.platform.outbox import outbox_messages
from townhall.shipping.adapters.simulator import SimulatedCarrier
from townhall.shipping.adapters.sql import OutboxShippingEvents, SqlPlacedOrders, SqlShipments
from townhall.shipping.adapters.sql import SqlHandledCommands as ShippingInbox
from townhall.shipping.choreography import ShippingChoreography
from townhall.shipping.ports import Received as ShippingReceived
from townhall.shipping.service import ShippingService

pytestmark = pytest.mark.timeout(60)

MIGRATIONS = [
    Path(module.__file__).parent / "migrations"
    for module in (townhall.inventory, townhall.payments, townhall.shipping)
]
CARD = "4242424242424242"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, tmp_path):
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    else:
        name = database_name("c")
        url = await create_database(name)
    database = Database(url)
    await migrate(database, MIGRATIONS)
    yield database
    await database.dispose()
    if name is not None:
        await drop_database(name)


class Participants:
    def __init__(self, database: Database) -> None:
        clock = SystemClock()
        self.database = database
        self.catalogue = Catalogue(database, SqlProducts(), clock)
        stock = Stock(database, SqlProducts(), SqlReservations(), OutboxMessages(), clock)
        self.inventory = StockChoreography(database, SqlChoreographedOrders(), stock, clock)
        gateway = SimulatedPaymentGateway()
        service = PaymentService(
            database,
            SqlPayments(),
            OutboxPaymentEvents(),
            SqlHandledCommands("payments.choreography"),
            gateway,
            call_timeout=1.0,
        )
        self.payments = PaymentChoreography(
            database, SqlVault(), SqlPayments(), service, retry_after=0.1
        )
        shipments = ShippingService(
            database,
            SqlShipments(),
            OutboxShippingEvents(),
            ShippingInbox("shipping.choreography"),
            SimulatedCarrier(),
        )
        self.shipping = ShippingChoreography(database, SqlPlacedOrders(), SqlShipments(), shipments)

    async def published(self, order_id: str) -> Counter[str]:
        """How many of each message type the participants published for the order."""
        query = sa.select(outbox_messages.c.body).where(outbox_messages.c.key == order_id)
        async with self.database.connect() as conn:
            bodies = (await conn.execute(query)).scalars().all()
        return Counter(json.loads(body)["type"] for body in bodies)

    async def causes(self, order_id: str, message_type: str) -> list[str]:
        """The causation ids of the order's messages of one type, in the order published."""
        query = (
            sa.select(outbox_messages.c.body)
            .where(outbox_messages.c.key == order_id)
            .order_by(outbox_messages.c.position)
        )
        async with self.database.connect() as conn:
            bodies = [json.loads(body) for body in (await conn.execute(query)).scalars()]
        return [b["headers"]["causation_id"] for b in bodies if b["type"] == message_type]

    async def stock(self) -> int:
        return (await self.catalogue.get("mug")).available


def placed(order_id: str, mode: str = "choreography") -> orders.OrderPlaced:
    return orders.OrderPlaced(
        order_id=order_id,
        buyer_id="buyer-1",
        lines=(orders.PlacedLine("mug", 2, 900),),
        total_cents=1800,
        currency="EUR",
        shipping_address=orders.ShippingAddress("Ada", "1 Main St", "Ghent", "9000", "BE"),
        saga_mode=mode,
    )


def cause(order_id: str, message_id: str | None = None) -> Cause:
    return Cause(correlation_id=order_id, message_id=message_id or new_id_str())


def paid(order_id: str, message_id: str | None = None) -> PaymentReceived:
    return PaymentReceived(message_id or new_id_str(), order_id)


def shipped(order_id: str, message_id: str | None = None) -> ShippingReceived:
    return ShippingReceived(message_id or new_id_str(), order_id)


async def test_redelivered_and_reordered_events_are_handled_once(database):
    world = Participants(database)
    await world.catalogue.add("mug", "Mug", 900, "EUR", 10)

    # A: every event twice (the same delivery again) and once more under another id; shipping
    # hears of the capture before the placement: it keeps it, and books when the order comes.
    a = new_id_str()
    early = new_id_str()
    await world.shipping.on_payment_captured(a, shipped(a, early))
    assert await world.published(a) == Counter()  # nothing to ship to yet
    await world.payments.vault(a, CARD, 1800, "EUR")
    await world.payments.vault(a, "4000000000000002", 1, "USD")  # the first vaulting stands
    first = new_id_str()
    for message_id in (first, first):
        await world.inventory.on_order_placed(placed(a), cause(a, message_id))
    assert await world.stock() == 8
    reserved = new_id_str()
    for message_id in (reserved, reserved, new_id_str()):
        await world.payments.on_stock_reserved(a, paid(a, message_id))
    for _ in range(2):
        await world.shipping.on_order_placed(placed(a), shipped(a))
    assert await world.causes(a, "shipping.ShipmentCreated") == [early]
    captured = new_id_str()
    for message_id in (captured, captured, new_id_str()):
        await world.shipping.on_payment_captured(a, shipped(a, message_id))
    assert await world.published(a) == Counter(
        {"inventory.StockReserved": 1, "payments.PaymentCaptured": 1, "shipping.ShipmentCreated": 1}
    )

    # B: the cancel reaches every participant before the placement (and the capture).
    b = new_id_str()
    await world.payments.vault(b, CARD, 1800, "EUR")
    await world.shipping.on_order_placed(placed(b), shipped(b))
    await world.inventory.on_cancel_requested(b, cause(b))
    await world.payments.on_cancel_requested(b, paid(b))
    await world.shipping.on_cancel_requested(b, shipped(b))
    await world.inventory.on_order_placed(placed(b), cause(b))  # late: never reserved
    await world.payments.on_stock_reserved(b, paid(b))  # never captured
    await world.shipping.on_payment_captured(b, shipped(b))  # never shipped
    assert await world.stock() == 8
    assert await world.published(b) == Counter(
        {
            "inventory.StockReleased": 1,
            "payments.PaymentRefunded": 1,  # nothing captured, and nothing will be
            "shipping.ShipmentCancelled": 1,
        }
    )

    # D: shipping hears the cancel first, then the capture, then the placement: it answers the
    # cancel at once and books nothing, ever.
    d = new_id_str()
    await world.shipping.on_cancel_requested(d, shipped(d))
    await world.shipping.on_payment_captured(d, shipped(d))
    await world.shipping.on_order_placed(placed(d), shipped(d))
    assert await world.published(d) == Counter({"shipping.ShipmentCancelled": 1})

    # E: the capture first, then the cancel, then the placement: cancelled, never booked.
    e = new_id_str()
    await world.shipping.on_payment_captured(e, shipped(e))
    await world.shipping.on_cancel_requested(e, shipped(e))
    await world.shipping.on_order_placed(placed(e), shipped(e))
    assert await world.published(e) == Counter({"shipping.ShipmentCancelled": 1})

    # C: an order of the orchestration: its saga sends commands; events change nothing here.
    c = new_id_str()
    await world.inventory.on_order_placed(placed(c, "orchestration"), cause(c))
    await world.shipping.on_order_placed(placed(c, "orchestration"), shipped(c))
    await world.payments.on_stock_reserved(c, paid(c))
    await world.inventory.on_payment_undone(c, cause(c))
    await world.shipping.on_payment_captured(c, shipped(c))
    await world.shipping.on_cancel_requested(c, shipped(c))
    assert await world.published(c) == Counter()
    assert await world.stock() == 8

    # A again: the shipment fails late (a carrier's second thought): refund, then release.
    await world.payments.on_shipment_failed(a, paid(a))
    await world.inventory.on_payment_undone(a, cause(a))
    await world.inventory.on_payment_undone(a, cause(a))  # the refund heard twice
    published = await world.published(a)
    assert (published["payments.PaymentRefunded"], published["inventory.StockReleased"]) == (1, 2)
    assert await world.stock() == 10  # released once
