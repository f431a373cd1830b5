"""The order saga, input by input: the steps in order, every failure and timeout with the
compensations it runs, duplicates and late replies, stale timers and the buyer's cancel."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from support.orders import CARD, T0, placed_order
from townhall.inventory import events as inventory
from townhall.orders.domain import FailureReason, OrderStatus
from townhall.orders.saga import (
    CANCELLED,
    CONFIRMED,
    CancelOrder,
    DeadlinePassed,
    Handled,
    Note,
    Outcome,
    Phase,
    Saga,
    Step,
    StepStatus,
    Timeouts,
    handle,
    start,
)
from townhall.payments import events as payments
from townhall.platform.clock import FrozenClock
from townhall.shipping import events as shipping

TIMEOUTS = Timeouts(
    reserve_stock=timedelta(seconds=1),
    capture_payment=timedelta(seconds=2),
    create_shipment=timedelta(seconds=3),
    compensation=timedelta(seconds=4),
)


class Run:
    """One saga driven input by input, keeping every `Handled`."""

    def __init__(self) -> None:
        self.clock = FrozenClock(T0)
        self.order = placed_order(self.clock)
        self.id = str(self.order.id)
        self.last = start(self.order, CARD, self.clock, TIMEOUTS)
        self.all = [self.last]

    @property
    def saga(self) -> Saga:
        return self.last.saga

    def __call__(self, message) -> Handled:
        self.clock.advance(milliseconds=10)
        self.last = handle(self.saga, message, self.clock)
        self.all.append(self.last)
        return self.last

    def reserved(self) -> Handled:
        return self(inventory.StockReserved(self.id))

    def captured(self) -> Handled:
        return self(payments.PaymentCaptured(self.id, "pay-1", self.order.total_cents, "EUR"))

    def shipped(self) -> Handled:
        return self(shipping.ShipmentCreated(self.id, "ship-1"))

    def released(self) -> Handled:
        return self(inventory.StockReleased(self.id))

    def refunded(self) -> Handled:
        return self(payments.PaymentRefunded(self.id, "pay-1", self.order.total_cents, "EUR"))

    def timer(self) -> Handled:
        waiting = self.saga.waiting
        assert waiting is not None
        return self(waiting.timer)

    @property
    def finished(self) -> list[Outcome]:
        return [handled.finished for handled in self.all if handled.finished is not None]


def unchanged(run: Run, message, note: Note) -> None:
    before = run.saga
    handled = run(message)
    assert (handled.note, handled.commands, handled.finished) == (note, (), None)
    assert handled.saga == before


def test_a_new_saga_first_reserves_the_stock_with_a_deadline():
    run = Run()
    assert run.last.commands == (
        inventory.ReserveStock(
            run.id, (inventory.StockLine("tee-m", 2), inventory.StockLine("ticket-2027", 1))
        ),
    )
    waiting = run.saga.waiting
    assert waiting is not None
    assert (waiting.step, waiting.compensating, waiting.attempt) == (Step.RESERVE_STOCK, False, 1)
    assert waiting.deadline == T0 + TIMEOUTS.reserve_stock
    assert run.saga.phase is Phase.RUNNING


def test_the_steps_run_in_order_and_the_shipment_confirms_the_order_once():
    run = Run()
    [capture] = run.reserved().commands
    assert capture == payments.CapturePayment(
        run.id, 7000, "EUR", CARD, f"order-{run.id}.capture_payment"
    )
    assert run.saga.waiting and run.saga.waiting.deadline == run.clock.now() + timedelta(seconds=2)
    [ship] = run.captured().commands
    assert isinstance(ship, shipping.CreateShipment)
    assert ship.address.postal_code == "SW1Y 4JH" and ship.lines[0] == shipping.ShippedLine(
        "tee-m", 2
    )
    done = run.shipped()
    assert (done.note, done.commands, done.finished) == (Note.APPLIED, (), CONFIRMED)
    assert run.saga.settled
    unchanged(run, shipping.ShipmentCreated(run.id, "ship-1"), Note.DUPLICATE)
    assert run.finished == [CONFIRMED]


def test_out_of_stock_fails_the_order_at_once_with_nothing_to_compensate():
    run = Run()
    handled = run(inventory.StockReservationFailed(run.id, ("tee-m",)))
    assert handled.commands == ()
    assert handled.finished == Outcome(OrderStatus.FAILED, FailureReason.OUT_OF_STOCK)
    assert run.saga.settled


def test_a_declined_payment_releases_the_stock_and_then_fails_with_the_decline_code():
    run = Run()
    run.reserved()
    handled = run(payments.PaymentFailed(run.id, "insufficient_funds"))
    assert handled.commands == (inventory.ReleaseStock(run.id),)
    assert handled.finished is None and run.saga.phase is Phase.COMPENSATING
    done = run.released()
    assert done.finished == Outcome(
        OrderStatus.FAILED, FailureReason.PAYMENT_DECLINED, "insufficient_funds"
    )
    assert run.saga.settled


def test_a_shipping_failure_refunds_the_payment_then_releases_the_stock_then_fails():
    run = Run()
    run.reserved()
    run.captured()
    refund = run(shipping.ShipmentFailed(run.id, "undeliverable")).commands
    assert refund == (
        payments.RefundPayment(run.id, "pay-1", 7000, "EUR", f"order-{run.id}.refund_payment"),
    )
    assert run.refunded().commands == (inventory.ReleaseStock(run.id),)
    assert run.released().finished == Outcome(OrderStatus.FAILED, FailureReason.SHIPPING_FAILED)
    assert run.finished == [Outcome(OrderStatus.FAILED, FailureReason.SHIPPING_FAILED)]


@pytest.mark.parametrize(
    ("succeeded", "reason", "compensations"),
    [
        (0, FailureReason.STOCK_TIMEOUT, []),
        (1, FailureReason.PAYMENT_TIMEOUT, [inventory.ReleaseStock]),
        (2, FailureReason.SHIPPING_TIMEOUT, [payments.RefundPayment, inventory.ReleaseStock]),
    ],
)
def test_a_step_past_its_deadline_compensates_the_steps_before_it_in_reverse_order(
    succeeded, reason, compensations
):
    run = Run()
    for reply in (run.reserved, run.captured)[:succeeded]:
        reply()
    sent = [type(command) for command in run.timer().commands]
    while run.saga.waiting is not None:
        answer = run.refunded if run.saga.waiting.step is Step.CAPTURE_PAYMENT else run.released
        sent += [type(command) for command in answer().commands]
    assert sent == compensations
    assert run.finished == [Outcome(OrderStatus.FAILED, reason)]


def test_a_compensation_past_its_deadline_is_sent_again_with_the_same_key_until_answered():
    run = Run()
    run.reserved()
    run.captured()
    [refund] = run(shipping.ShipmentFailed(run.id, "x")).commands
    first_timer = run.saga.waiting and run.saga.waiting.timer
    again = run.timer()
    assert again.commands == (refund,) and again.finished is None
    assert run.saga.waiting and run.saga.waiting.attempt == 2
    assert run.saga.waiting.deadline == run.clock.now() + TIMEOUTS.compensation
    unchanged(run, first_timer, Note.STALE_TIMER)
    assert run.refunded().commands == (inventory.ReleaseStock(run.id),)
    unchanged(run, payments.PaymentRefunded(run.id, "pay-1", 7000, "EUR"), Note.DUPLICATE)


def test_a_repeated_reply_is_a_duplicate_and_changes_nothing():
    run = Run()
    run.reserved()
    unchanged(run, inventory.StockReserved(run.id), Note.DUPLICATE)
    run(payments.PaymentFailed(run.id, "card_declined"))
    unchanged(run, payments.PaymentFailed(run.id, "card_declined"), Note.DUPLICATE)
    run.released()
    unchanged(run, inventory.StockReleased(run.id), Note.DUPLICATE)
    assert len(run.finished) == 1


def test_a_failure_after_the_step_timed_out_is_late_and_changes_nothing():
    run = Run()
    run.reserved()
    run.timer()  # payment timed out: release the stock
    unchanged(run, payments.PaymentFailed(run.id, "card_declined"), Note.LATE)
    run.released()
    unchanged(run, payments.PaymentFailed(run.id, "card_declined"), Note.LATE)
    assert run.finished == [Outcome(OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)]


def test_a_payment_captured_after_its_timeout_is_refunded_once_after_the_order_failed():
    run = Run()
    run.reserved()
    run.timer()
    assert run.released().finished == Outcome(OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)
    late = run.captured()
    assert late.note is Note.LATE_SUCCESS and late.finished is None
    assert late.commands == (
        payments.RefundPayment(run.id, "pay-1", 7000, "EUR", f"order-{run.id}.refund_payment"),
    )
    assert run.saga.phase is Phase.FINISHED and not run.saga.settled
    unchanged(run, payments.PaymentCaptured(run.id, "pay-1", 7000, "EUR"), Note.DUPLICATE)
    done = run.refunded()
    assert (done.note, done.commands, done.finished) == (Note.APPLIED, (), None)
    assert run.saga.settled
    assert run.finished == [Outcome(OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)]


def test_a_payment_captured_late_while_compensating_is_refunded_before_the_order_fails():
    run = Run()
    run.reserved()
    run.timer()  # ReleaseStock is in flight
    late = run.captured()
    assert (late.note, late.commands) == (Note.LATE_SUCCESS, ())  # queued behind the release
    assert run.released().commands[0].type == "payments.RefundPayment"
    assert run.finished == []
    assert run.refunded().finished == Outcome(OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)


def test_a_shipment_created_after_its_timeout_is_cancelled():
    run = Run()
    run.reserved()
    run.captured()
    run.timer()
    run.refunded()
    run.released()
    late = run.shipped()
    assert late.note is Note.LATE_SUCCESS
    assert late.commands == (shipping.CancelShipment(run.id, "ship-1"),)
    done = run(shipping.ShipmentCancelled(run.id, "ship-1"))
    assert done.note is Note.APPLIED and run.saga.settled
    assert run.finished == [Outcome(OrderStatus.FAILED, FailureReason.SHIPPING_TIMEOUT)]


def test_a_timer_of_a_step_already_answered_is_stale():
    run = Run()
    timer = run.saga.waiting and run.saga.waiting.timer
    run.reserved()
    unchanged(run, timer, Note.STALE_TIMER)
    unchanged(run, DeadlinePassed(Step.CAPTURE_PAYMENT, attempt=2), Note.STALE_TIMER)


def test_a_reply_to_nothing_the_saga_asked_for_is_unexpected():
    run = Run()
    unchanged(run, payments.PaymentCaptured(run.id, "pay-1", 7000, "EUR"), Note.UNEXPECTED)
    unchanged(run, inventory.StockReleased(run.id), Note.UNEXPECTED)
    run.reserved()
    run.captured()
    run(shipping.ShipmentFailed(run.id, "x"))  # refund in flight, release queued
    unchanged(run, inventory.StockReleased(run.id), Note.UNEXPECTED)
    assert run.saga.steps[Step.RESERVE_STOCK] is StepStatus.COMPENSATING


def test_cancel_while_the_payment_is_captured_waits_for_it_then_refunds_and_releases():
    run = Run()
    run.reserved()
    accepted = run(CancelOrder())
    assert (accepted.note, accepted.commands) == (Note.APPLIED, ())
    after = run.captured()
    assert [type(c) for c in after.commands] == [payments.RefundPayment]
    assert [type(c) for c in run.refunded().commands] == [inventory.ReleaseStock]
    assert run.released().finished == CANCELLED
    assert not any(
        isinstance(c, shipping.CreateShipment) for handled in run.all for c in handled.commands
    )


def test_cancel_wins_over_a_failure_of_the_step_in_flight():
    run = Run()
    run(CancelOrder())
    assert run(inventory.StockReservationFailed(run.id)).finished == CANCELLED


def test_a_repeated_cancel_is_a_duplicate():
    run = Run()
    run(CancelOrder())
    unchanged(run, CancelOrder(), Note.DUPLICATE)


def test_cancel_is_refused_once_the_shipment_is_under_way_exists_or_the_order_fails():
    run = Run()
    run.reserved()
    run.captured()
    refused = run(CancelOrder())
    assert (
        refused.note is Note.REFUSED and refused.refusal == "the order's shipment is being created"
    )
    run.shipped()
    assert run(CancelOrder()).refusal == "the order's shipment exists"

    failing = Run()
    failing.reserved()
    failing(payments.PaymentFailed(failing.id, "card_declined"))
    assert failing(CancelOrder()).refusal == "the order is failing (payment_declined)"
    failing.released()
    unchanged(failing, CancelOrder(), Note.REFUSED)
    assert failing.last.refusal == "the order has failed (payment_declined)"


def test_a_saga_reads_back_from_its_data_at_every_step():
    run = Run()
    run.reserved()
    run.captured()
    run.timer()
    run.refunded()
    for handled in run.all:
        data = json.loads(json.dumps(handled.saga.to_data()))
        assert Saga.from_data(data) == handled.saga


def test_a_success_reported_after_the_same_steps_failure_is_undone():
    run = Run()
    run.reserved()
    run(payments.PaymentFailed(run.id, "card_declined"))
    run.released()
    contradiction = run.captured()
    assert contradiction.note is Note.LATE_SUCCESS
    assert [type(c) for c in contradiction.commands] == [payments.RefundPayment]
