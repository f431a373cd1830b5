"""What the saga proof reads back of an order, from the tables of the four modules, and what it
expects of a failure at each step (issue 21): the order's events, the saga's timeline, and the
participants' own records (the payment, the reservation, the shipment).

The participants' records and the order's events say the same thing in either saga mode; the
timeline (`orders_saga_steps`) holds, in orchestration, the commands the orchestrator sent and
the replies it handled, and in choreography the participants' events the orders module
recorded (there are no commands)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from townhall.platform.db import Database

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"  # card_declined
REFUSED_COUNTRY = "AQ"  # the carrier simulator is told to refuse it (shipping_refuse_countries)
STEPS = ("reserve_stock", "capture_payment", "create_shipment")
TERMINAL = ("OrderConfirmed", "OrderFailed", "OrderCancelled")

RESERVE = "inventory.ReserveStock"
RELEASE = "inventory.ReleaseStock"
CAPTURE = "payments.CapturePayment"
REFUND = "payments.RefundPayment"
SHIP = "shipping.CreateShipment"


@dataclass(frozen=True)
class Expected:
    """A saga's course: its end, the commands it sends (each once, in this order) and the
    order's events."""

    status: str
    reason: str | None
    commands: tuple[str, ...]
    events: tuple[str, ...]


CONFIRMED = Expected(
    "CONFIRMED",
    None,
    (RESERVE, CAPTURE, SHIP),
    ("OrderPlaced", "StockReserved", "PaymentCaptured", "ShipmentCreated", "OrderConfirmed"),
)
# A failure injected at step k: the steps before it are compensated once each, last first.
FAILED_AT = {
    "reserve_stock": Expected(
        "FAILED",
        "out_of_stock",
        (RESERVE,),
        ("OrderPlaced", "StockReservationFailed", "OrderFailed"),
    ),
    "capture_payment": Expected(
        "FAILED",
        "payment_declined",
        (RESERVE, CAPTURE, RELEASE),
        ("OrderPlaced", "StockReserved", "PaymentFailed", "StockReleased", "OrderFailed"),
    ),
    "create_shipment": Expected(
        "FAILED",
        "shipping_failed",
        (RESERVE, CAPTURE, SHIP, REFUND, RELEASE),
        (
            "OrderPlaced",
            "StockReserved",
            "PaymentCaptured",
            "ShipmentFailed",
            "PaymentRefunded",
            "StockReleased",
            "OrderFailed",
        ),
    ),
}


@dataclass(frozen=True)
class Step:
    """One row of the timeline."""

    module: str
    message_type: str
    message_id: str
    outcome: str
    causation_id: str | None = None


async def order_events(database: Database, order_id: str) -> list[str]:
    """The types of the order's events, in version order."""
    query = sa.text("SELECT type FROM eventstore_events WHERE stream_id = :stream ORDER BY version")
    async with database.connect() as conn:
        rows = (await conn.execute(query, {"stream": f"order-{order_id}"})).all()
    return [row.type for row in rows]


async def timeline(database: Database, order_id: str) -> list[Step]:
    query = sa.text(
        "SELECT module, message_type, message_id, outcome, causation_id FROM orders_saga_steps "
        "WHERE order_id = :order ORDER BY id"
    )
    async with database.connect() as conn:
        rows = (await conn.execute(query, {"order": order_id})).all()
    return [
        Step(row.module, row.message_type, row.message_id, row.outcome, row.causation_id)
        for row in rows
    ]


def commands_sent(steps: list[Step]) -> list[str]:
    """The commands the saga sent (not the orders module's own events)."""
    return [
        s.message_type
        for s in steps
        if s.outcome == "sent" and s.module == "orders" and not s.message_type.startswith("orders.")
    ]


async def rows(database: Database, sql: str, **params: Any) -> list[Any]:
    async with database.connect() as conn:
        return list((await conn.execute(sa.text(sql), params)).all())


async def participants_of(database: Database, order_id: str) -> dict[str, Any]:
    """The participants' records of one order: its payment `(status, amount, refunded)`, its
    reservation's status, its shipment's status (None where the participant has none)."""
    payment = await rows(
        database,
        "SELECT status, amount_cents, refunded_cents FROM payments_payments WHERE order_id = :o",
        o=order_id,
    )
    reservation = await rows(
        database, "SELECT status FROM inventory_reservations WHERE order_id = :o", o=order_id
    )
    shipment = await rows(
        database, "SELECT status FROM shipping_shipments WHERE order_id = :o", o=order_id
    )
    return {
        "payment": tuple(payment[0]) if payment else None,
        "reservation": reservation[0].status if reservation else None,
        "shipment": shipment[0].status if shipment else None,
    }


def facts_applied(steps: list[Step]) -> list[str]:
    """The participants' events the order took in (each once), in the order it took them."""
    return [
        s.message_type.split(".", 1)[1]
        for s in steps
        if s.module != "orders" and s.outcome == "applied"
    ]


# How a second copy of a participant's event is recorded: the orchestrator's saga calls any
# repeat a duplicate; the choreographed order calls a repeat after its end late.
REPEATS = {"orchestration": ("duplicate",), "choreography": ("duplicate", "late")}


def check_course(
    expected: Expected, events: list[str], steps: list[Step], mode: str = "orchestration"
) -> None:
    """The saga ran `expected`: in orchestration its commands each sent once in that order, no
    second command, and the order's events in that order. In choreography no command at all,
    the participants' events taken in once each, each caused by the one before it in
    `expected` (so the compensations ran once, last first: inventory released because payments
    refunded); the order records them as they arrive from their topics, in any order. In both,
    exactly one end."""
    shown = [(s.message_type, s.outcome) for s in steps]
    if mode == "orchestration":
        assert commands_sent(steps) == list(expected.commands), shown
        assert events == list(expected.events), events
    else:
        assert commands_sent(steps) == [], shown
        facts = list(expected.events[1:-1])
        assert sorted(facts_applied(steps)) == sorted(facts), shown
        taken: dict[str, Step] = {}
        for step in steps:
            if step.outcome in ("applied", "sent"):
                taken.setdefault(step.message_type.split(".", 1)[1], step)
        chain = [expected.events[0], *facts]
        for cause, effect in itertools.pairwise(chain):
            assert taken[effect].causation_id == taken[cause].message_id, (cause, effect, shown)
        assert (events[0], events[-1]) == (expected.events[0], expected.events[-1]), events
        assert sorted(events) == sorted(expected.events), events
    assert sum(events.count(end) for end in TERMINAL) == 1, events
