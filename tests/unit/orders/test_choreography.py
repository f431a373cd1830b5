"""The choreography on the orders side: the pure decision (`choreography.decide`) for every
order of the facts, and the `Choreographer` on in-memory ports: facts delivered twice, at
once and out of order end the order once, in the end the orchestration gives the same
scenario; a cancel is refused once the money is captured and ends CANCELLED once every
participant answered; orders of the other mode are left alone."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from support.order_fakes import (
    MemoryChoreographies,
    MemoryMessages,
    MemoryOrders,
    MemoryTimeline,
    MemoryTransactions,
    MemoryVault,
)
from support.orders import ADDRESS, CARD, LINES, T0, placed_order
from townhall.inventory import events as inventory
from townhall.orders import events as public
from townhall.orders.choreographer import Choreographer
from townhall.orders.choreography import cancel_refusal, decide
from townhall.orders.domain import FailureReason, Order, OrderPlaced, OrderStatus, evolve
from townhall.orders.saga import Note, Outcome
from townhall.orders.service import CancelRefused, NewOrder, Received
from townhall.payments import events as payments
from townhall.platform.clock import FrozenClock
from townhall.platform.ids import new_id_str
from townhall.shipping import events as shipping

ID = "o-1"
RESERVED = inventory.StockReserved(ID)
SHORT = inventory.StockReservationFailed(ID, ("tee-m",))
RELEASED = inventory.StockReleased(ID)
CAPTURED = payments.PaymentCaptured(ID, "pay-1", 7000, "EUR")
DECLINED = payments.PaymentFailed(ID, "insufficient_funds")
TIMED_OUT = payments.PaymentFailed(ID, payments.PAYMENT_TIMEOUT)
REFUNDED = payments.PaymentRefunded(ID, "pay-1", 7000, "EUR")
CREATED = shipping.ShipmentCreated(ID, "ship-1")
UNSHIPPABLE = shipping.ShipmentFailed(ID, "undeliverable_address")

FAILED = OrderStatus.FAILED
# The facts each scenario brings, and the end they make (the orchestration's for it).
SCENARIOS = {
    "success": ((RESERVED, CAPTURED, CREATED), Outcome(OrderStatus.CONFIRMED)),
    "out_of_stock": ((SHORT,), Outcome(FAILED, FailureReason.OUT_OF_STOCK)),
    "declined": (
        (RESERVED, DECLINED, RELEASED),
        Outcome(FAILED, FailureReason.PAYMENT_DECLINED, "insufficient_funds"),
    ),
    "payment_timeout": (
        (RESERVED, TIMED_OUT, RELEASED),
        Outcome(FAILED, FailureReason.PAYMENT_TIMEOUT),
    ),
    "shipping_failed": (
        (RESERVED, CAPTURED, UNSHIPPABLE, REFUNDED, RELEASED),
        Outcome(FAILED, FailureReason.SHIPPING_FAILED),
    ),
}


def recorded(order: Order, replies) -> Order:
    clock = FrozenClock(T0)
    for reply in replies:
        for event in order.record(reply, clock).events:
            order = evolve(order, event)
    return order


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_end_comes_with_the_last_fact_whatever_their_order(name):
    facts, end = SCENARIOS[name]
    decline = next((f.decline_code for f in facts if isinstance(f, payments.PaymentFailed)), None)
    for ordering in itertools.permutations(facts):
        order = placed_order()
        for count, fact in enumerate(ordering, 1):
            order = recorded(order, [fact, fact])  # a duplicate changes nothing
            expected = end if count == len(facts) else None
            assert decide(order, decline) == expected, (ordering, count)


def test_a_cancel_ends_only_once_every_participant_answered():
    order = recorded(placed_order(), [RESERVED])
    assert cancel_refusal(order) is None
    order = evolve(order, *order.request_cancel(FrozenClock(T0)).events)
    cancelled = shipping.ShipmentCancelled(ID, "")
    nothing_taken = payments.PaymentRefunded(ID, "", 0, "EUR")
    for answers in itertools.permutations((RELEASED, nothing_taken, cancelled)):
        partial = recorded(order, answers[:2])
        assert decide(partial) is None
        assert decide(recorded(partial, answers[2:])) == Outcome(OrderStatus.CANCELLED)


def test_a_cancel_is_refused_once_the_money_is_captured_or_the_order_is_final():
    assert "captured" in (cancel_refusal(recorded(placed_order(), [RESERVED, CAPTURED])) or "")
    order = recorded(placed_order(), [SHORT])
    order = evolve(order, *order.fail(FailureReason.OUT_OF_STOCK, FrozenClock(T0)).events)
    assert cancel_refusal(order) == "the order is already FAILED"


def test_an_expired_reservation_does_not_confirm_the_order():
    order = recorded(placed_order(), [RESERVED, CAPTURED, RELEASED, CREATED])
    assert decide(order) is None  # it waits, and its row's deadline lists it as stuck


# --- the Choreographer on in-memory ports ---------------------------------------------------


class World:
    def __init__(self) -> None:
        self.clock = FrozenClock(T0)
        self.tx = MemoryTransactions()
        self.orders = MemoryOrders()
        self.rows = MemoryChoreographies()
        self.timeline = MemoryTimeline()
        self.messages = MemoryMessages()
        self.vault = MemoryVault()
        self.choreographer = Choreographer(
            self.tx,
            self.orders,
            self.rows,
            self.timeline,
            self.messages,
            self.vault,
            self.clock,
        )

    async def place(self) -> str:
        order = await self.choreographer.place(NewOrder("buyer-1", LINES, "EUR", ADDRESS, CARD))
        return str(order.id)

    async def reply(self, message, order_id: str):
        message = type(message)(**{**message.to_payload(), "order_id": order_id})
        self.clock.advance(milliseconds=10)
        received = Received(new_id_str(), message.type, message.type.split(".")[0], order_id)
        return await self.choreographer.handle(message, received)

    async def order(self, order_id: str) -> Order:
        async with self.tx.connect() as conn:
            order = await self.orders.load(conn, uuid.UUID(order_id))
        assert order is not None
        return order

    def sent(self) -> list[str]:
        return [envelope.type for _, envelope in self.messages.sent]


async def test_placing_vaults_the_card_and_publishes_order_placed_without_it():
    world = World()
    order_id = await world.place()
    assert world.vault.vaulted == {order_id: (CARD, 7000, "EUR")}
    ((topic, placed),) = world.messages.sent
    assert (topic, placed.type) == (public.TOPIC, public.OrderPlaced.type)
    assert placed.payload["saga_mode"] == "choreography"
    assert CARD not in str(placed.payload)
    assert world.rows.rows[order_id][:2] == ("running", None)


async def test_facts_twice_at_once_and_out_of_order_confirm_the_order_once():
    world = World()
    order_id = await world.place()
    # The reverse of the flow, each fact twice at once: one copy applies, the other is judged
    # against the order the first left (a duplicate; after the end, late).
    for fact, second in (
        (CREATED, Note.DUPLICATE),
        (CAPTURED, Note.DUPLICATE),
        (RESERVED, Note.LATE),
    ):
        notes = await asyncio.gather(world.reply(fact, order_id), world.reply(fact, order_id))
        assert sorted(notes) == sorted([Note.APPLIED, second])
    assert await world.reply(CAPTURED, order_id) is Note.LATE  # after the end
    order = await world.order(order_id)
    assert (order.status, order.version) == (OrderStatus.CONFIRMED, 5)
    assert world.sent() == [public.OrderPlaced.type, public.OrderConfirmed.type]
    assert world.rows.rows[order_id] == ("finished", "CONFIRMED", None)
    outcomes = [e.outcome for e in world.timeline.entries if e.module != "orders"]
    assert sorted(outcomes) == ["applied"] * 3 + ["duplicate"] * 2 + ["late"] * 2


async def test_a_shipping_failure_heard_before_its_cause_fails_the_order_once_compensated():
    world = World()
    order_id = await world.place()
    for fact in (RELEASED, UNSHIPPABLE, REFUNDED, CAPTURED):
        assert await world.reply(fact, order_id) is Note.APPLIED
        assert (await world.order(order_id)).status is OrderStatus.PENDING
    await world.reply(RESERVED, order_id)
    order = await world.order(order_id)
    assert (order.status, order.reason, order.decline_code) == (
        OrderStatus.FAILED,
        FailureReason.SHIPPING_FAILED,
        None,
    )
    ((_, failed),) = [(t, e) for t, e in world.messages.sent if e.type == public.OrderFailed.type]
    assert failed.payload["reason"] == "shipping_failed"


async def test_a_declined_payment_keeps_its_decline_code_when_the_release_comes_later():
    world = World()
    order_id = await world.place()
    for fact in (RESERVED, DECLINED, RELEASED):
        await world.reply(fact, order_id)
    order = await world.order(order_id)
    assert (order.reason, order.decline_code) == (
        FailureReason.PAYMENT_DECLINED,
        "insufficient_funds",
    )


async def test_a_cancel_is_published_once_refused_after_the_capture_and_ends_cancelled():
    world = World()
    order_id = await world.place()
    await world.reply(RESERVED, order_id)
    assert await world.choreographer.cancel(uuid.UUID(order_id)) is Note.APPLIED
    assert await world.choreographer.cancel(uuid.UUID(order_id)) is Note.DUPLICATE
    assert world.sent().count(public.OrderCancelRequested.type) == 1
    await world.reply(CAPTURED, order_id)  # a capture already under way still lands
    await world.reply(RELEASED, order_id)
    await world.reply(shipping.ShipmentCancelled(ID, ""), order_id)
    assert (await world.order(order_id)).status is OrderStatus.PENDING  # the refund is due
    await world.reply(REFUNDED, order_id)
    assert (await world.order(order_id)).status is OrderStatus.CANCELLED
    assert world.sent()[-1] == public.OrderCancelled.type
    assert await world.choreographer.cancel(uuid.UUID(order_id)) is Note.DUPLICATE

    other = await world.place()
    await world.reply(RESERVED, other)
    await world.reply(CAPTURED, other)
    with pytest.raises(CancelRefused, match="captured"):
        await world.choreographer.cancel(uuid.UUID(other))
    refused = [e for e in world.timeline.entries if e.order_id == other][-1]
    assert (refused.outcome, refused.message_type) == ("refused", "orders.CancelOrder")


async def test_an_order_of_the_orchestration_is_left_alone():
    world = World()
    order = placed_order()  # placed in orchestration mode
    async with world.tx.transaction() as conn:
        await world.orders.append(conn, None, [_placed_event(order)])
    assert await world.reply(RESERVED, str(order.id)) is None
    assert world.timeline.entries == [] and world.messages.sent == []


def _placed_event(order: Order) -> OrderPlaced:
    return OrderPlaced(
        at=order.created_at,
        order_id=order.id,
        buyer_id=order.buyer_id,
        lines=order.lines,
        total_cents=order.total_cents,
        currency=order.currency,
        shipping_address=order.shipping_address,
        saga_mode=order.saga_mode,
    )
