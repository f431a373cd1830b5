"""The order aggregate: placing, recording the participants' facts once, the three ends, and
folding its events (now and as of a time)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from support.orders import ADDRESS, LINES, T0, placed_order
from townhall.inventory import events as inventory
from townhall.orders.domain import (
    CancelRequested,
    CannotCancel,
    CannotConfirm,
    FailureReason,
    Ignored,
    InvalidOrder,
    Order,
    OrderCancelled,
    OrderConfirmed,
    OrderFailed,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    PaymentCaptured,
    SagaMode,
    StockReleased,
    StockReserved,
    event_from_data,
    evolve,
    fold,
    place,
    stream_id,
)
from townhall.payments import events as payments
from townhall.platform.clock import FrozenClock
from townhall.shipping import events as shipping

RESERVED = inventory.StockReserved("o-1")
CAPTURED = payments.PaymentCaptured("o-1", "pay-1", 7000, "EUR")
SHIPPED = shipping.ShipmentCreated("o-1", "ship-1")


def applied(order: Order, *changes_of) -> Order:
    for change in changes_of:
        for event in change.events:
            order = evolve(order, event)
    return order


def run(order: Order, clock: FrozenClock, *replies) -> Order:
    for reply in replies:
        clock.advance(milliseconds=1)
        order = applied(order, order.record(reply, clock))
    return order


def test_a_placed_order_is_pending_with_its_total_computed_from_the_unit_prices():
    clock = FrozenClock(T0)
    order = placed_order(clock)
    assert order.status is OrderStatus.PENDING
    assert order.total_cents == 2 * 1500 + 4000
    assert order.currency == "EUR"
    assert order.lines == LINES
    assert order.created_at == order.updated_at == T0
    assert order.version == 1
    assert stream_id(order.id) == f"order-{order.id}"


@pytest.mark.parametrize(
    ("lines", "currency", "address", "field"),
    [
        ((), "EUR", ADDRESS, "items"),
        ((OrderLine("a", 1, 1),) * 51, "EUR", ADDRESS, "items"),
        ((OrderLine("a", 0, 100),), "EUR", ADDRESS, "items.0.quantity"),
        ((OrderLine("a", 1, 100), OrderLine("b", 101, 1)), "EUR", ADDRESS, "items.1.quantity"),
        ((OrderLine("a", 1, 100), OrderLine("a", 1, 100)), "EUR", ADDRESS, "items.1.sku"),
        ((OrderLine(" ", 1, 100),), "EUR", ADDRESS, "items.0.sku"),
        ((OrderLine("a", 1, -1),), "EUR", ADDRESS, "items.0.price_cents"),
        (LINES, "eur", ADDRESS, "currency"),
        (LINES, "EURO", ADDRESS, "currency"),
        (LINES, "EUR", replace(ADDRESS, city=""), "shipping_address.city"),
        (LINES, "EUR", replace(ADDRESS, line1="  "), "shipping_address.line1"),
        (LINES, "EUR", replace(ADDRESS, country="GBR"), "shipping_address.country"),
    ],
)
def test_an_order_that_breaks_a_rule_is_refused_naming_the_field(lines, currency, address, field):
    with pytest.raises(InvalidOrder) as caught:
        place(
            buyer_id="b",
            lines=lines,
            currency=currency,
            shipping_address=address,
            saga_mode=SagaMode.ORCHESTRATION,
            clock=FrozenClock(T0),
        )
    assert caught.value.field == field


def test_a_participant_fact_is_recorded_once_and_its_repeat_is_recognised_as_a_duplicate():
    clock = FrozenClock(T0)
    order = placed_order(clock)
    first = order.record(RESERVED, clock)
    assert first.events == (StockReserved(at=T0),) and first.ignored is None
    order = applied(order, first)
    again = order.record(RESERVED, clock)
    assert again.events == () and again.ignored is Ignored.DUPLICATE
    assert order.stock_held and order.version == 2


def test_an_order_is_confirmed_once_it_holds_stock_payment_and_shipment_and_only_once():
    clock = FrozenClock(T0)
    order = run(placed_order(clock), clock, RESERVED, CAPTURED, SHIPPED)
    confirmed = applied(order, order.confirm(clock))
    assert confirmed.status is OrderStatus.CONFIRMED
    again = confirmed.confirm(clock)
    assert again.events == () and again.ignored is Ignored.DUPLICATE


def test_confirming_without_a_shipment_is_refused_naming_what_is_missing():
    clock = FrozenClock(T0)
    order = run(placed_order(clock), clock, RESERVED, CAPTURED)
    with pytest.raises(CannotConfirm, match="a shipment"):
        order.confirm(clock)
    refunded = run(order, clock, payments.PaymentRefunded("o-1", "pay-1", 7000, "EUR"), SHIPPED)
    with pytest.raises(CannotConfirm, match="a captured payment"):
        refunded.confirm(clock)


def test_a_failed_order_keeps_its_reason_and_decline_code_and_changes_no_more():
    clock = FrozenClock(T0)
    order = run(placed_order(clock), clock, RESERVED, payments.PaymentFailed("o-1", "x"))
    order = run(order, clock, inventory.StockReleased("o-1"))
    change = order.fail(FailureReason.PAYMENT_DECLINED, clock, decline_code="insufficient_funds")
    failed = applied(order, change)
    assert (failed.status, failed.reason, failed.decline_code) == (
        OrderStatus.FAILED,
        FailureReason.PAYMENT_DECLINED,
        "insufficient_funds",
    )
    late = payments.PaymentCaptured("o-1", "pay-9", 7000, "EUR")
    assert failed.record(late, clock) == failed.record(SHIPPED, clock)
    assert failed.record(late, clock).ignored is Ignored.TERMINAL
    assert failed.confirm(clock).ignored is Ignored.TERMINAL
    assert failed.cancel(clock).ignored is Ignored.TERMINAL
    assert failed.fail(FailureReason.OUT_OF_STOCK, clock).ignored is Ignored.DUPLICATE
    assert failed.reason is FailureReason.PAYMENT_DECLINED


def test_a_cancel_request_is_accepted_while_pending_and_its_repeat_is_a_duplicate():
    clock = FrozenClock(T0)
    order = run(placed_order(clock), clock, RESERVED)
    requested = applied(order, order.request_cancel(clock))
    assert requested.cancel_requested and requested.status is OrderStatus.PENDING
    assert requested.request_cancel(clock).ignored is Ignored.DUPLICATE
    cancelled = applied(requested, requested.cancel(clock))
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.request_cancel(clock).ignored is Ignored.DUPLICATE


def test_cancelling_is_refused_once_the_shipment_exists_or_the_order_is_final():
    clock = FrozenClock(T0)
    shipped = run(placed_order(clock), clock, RESERVED, CAPTURED, SHIPPED)
    with pytest.raises(CannotCancel, match="shipment exists"):
        shipped.request_cancel(clock)
    with pytest.raises(CannotCancel, match="shipment exists"):
        shipped.cancel(clock)
    confirmed = applied(shipped, shipped.confirm(clock))
    with pytest.raises(CannotCancel, match="already CONFIRMED"):
        confirmed.request_cancel(clock)
    failed = applied(
        placed_order(clock), placed_order(clock).fail(FailureReason.OUT_OF_STOCK, clock)
    )
    with pytest.raises(CannotCancel, match="already FAILED"):
        failed.request_cancel(clock)


def test_every_event_reads_back_from_its_stored_data_with_microseconds():
    clock = FrozenClock(T0)
    placed = place(
        buyer_id="b",
        lines=LINES,
        currency="EUR",
        shipping_address=replace(ADDRESS, line2="Flat 2"),
        saga_mode=SagaMode.CHOREOGRAPHY,
        clock=clock,
    )
    order = fold([placed])
    assert order is not None
    events = [
        placed,
        *order.record(inventory.StockReservationFailed("o", ("tee-m",)), clock).events,
        *order.record(RESERVED, clock).events,
        *order.record(CAPTURED, clock).events,
        *order.record(payments.PaymentFailed("o", "card_declined"), clock).events,
        *order.record(payments.PaymentRefunded("o", "pay-1", 7000, "EUR"), clock).events,
        *order.record(SHIPPED, clock).events,
        *order.record(shipping.ShipmentFailed("o", "undeliverable"), clock).events,
        *order.record(shipping.ShipmentCancelled("o", "ship-1"), clock).events,
        *order.record(inventory.StockReleased("o"), clock).events,
        *order.request_cancel(clock).events,
        *order.fail(FailureReason.PAYMENT_DECLINED, clock, "insufficient_funds").events,
        *order.cancel(clock).events,
        OrderConfirmed(at=T0),
    ]
    assert len({type(event) for event in events}) == 14
    for event in events:
        stored = json.loads(json.dumps(event.to_data()))
        assert event_from_data(event.type, stored) == event
    assert json.loads(json.dumps(placed.to_data()))["at"] == "2026-12-04T09:00:00.123456+00:00"


def test_an_unknown_event_type_is_named():
    with pytest.raises(LookupError, match="'Nope'"):
        event_from_data("Nope", {})


def test_a_stream_starts_with_one_order_placed():
    clock = FrozenClock(T0)
    order = placed_order(clock)
    with pytest.raises(ValueError, match="starts with OrderPlaced"):
        evolve(None, StockReserved(at=T0))
    placed = place(
        buyer_id="b",
        lines=LINES,
        currency="EUR",
        shipping_address=ADDRESS,
        saga_mode=SagaMode.ORCHESTRATION,
        clock=clock,
    )
    with pytest.raises(ValueError, match="already placed"):
        evolve(order, placed)


def test_as_of_gives_the_order_as_it_was_then_and_none_before_it_existed():
    clock = FrozenClock(T0)
    placed = place(
        buyer_id="b",
        lines=LINES,
        currency="EUR",
        shipping_address=ADDRESS,
        saga_mode=SagaMode.ORCHESTRATION,
        clock=clock,
    )
    at = [T0 + timedelta(seconds=n) for n in range(4)]
    events = [
        placed,
        StockReserved(at=at[1]),
        PaymentCaptured(at=at[2], payment_id="p", amount_cents=7000),
        OrderFailed(at=at[3], reason=FailureReason.SHIPPING_TIMEOUT),
    ]
    assert fold(events, until=T0 - timedelta(microseconds=1)) is None
    assert fold(events, until=T0) == fold(events[:1])
    as_of = fold(events, until=at[2] + timedelta(milliseconds=500))
    assert as_of is not None and as_of.status is OrderStatus.PENDING
    assert as_of.money_held and as_of.version == 3 and as_of.updated_at == at[2]
    now = fold(events)
    assert now is not None and now.status is OrderStatus.FAILED and now.version == 4


def test_as_of_folds_a_prefix_even_when_a_clock_stepped_back():
    clock = FrozenClock(T0)
    order = placed_order(clock)
    placed = OrderPlaced(
        at=T0,
        order_id=order.id,
        buyer_id=order.buyer_id,
        lines=order.lines,
        total_cents=order.total_cents,
        currency=order.currency,
        shipping_address=order.shipping_address,
        saga_mode=order.saga_mode,
    )
    events = [
        placed,
        StockReserved(at=T0 + timedelta(seconds=5)),
        StockReleased(at=T0 + timedelta(seconds=1)),  # another process, a clock behind
        CancelRequested(at=T0 + timedelta(seconds=6)),
        OrderCancelled(at=T0 + timedelta(seconds=7)),
    ]
    as_of = fold(events, until=T0 + timedelta(seconds=2))
    assert as_of == fold(events[:1])
