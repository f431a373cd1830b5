"""Property tests of the saga and the order aggregate.

The saga runs against three simulated participants that are idempotent, as the real ones must
be (a repeated command gives the same answer and has its effect once). Hypothesis plays the
network: it delivers replies in any order, delivers some twice, fires any timer ever armed
(stale ones too, and current ones before the reply is in), and sends cancels. Then every reply
still in flight is delivered and timers fire until the saga settles. Whatever happened, the saga
ends in one terminal state consistent with what the participants did, every compensation of a
step that took effect runs exactly once, and no stock, money or shipment is left behind unless
the order is CONFIRMED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

import hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st

from support.orders import CARD, T0, placed_order
from townhall.inventory import events as inventory
from townhall.orders.domain import (
    CannotCancel,
    CannotConfirm,
    FailureReason,
    Ignored,
    Order,
    OrderStatus,
    Reply,
    event_from_data,
    evolve,
    fold,
)
from townhall.orders.saga import (
    STEPS,
    CancelOrder,
    DeadlinePassed,
    Handled,
    Input,
    Note,
    Saga,
    Step,
    handle,
    start,
)
from townhall.payments import events as payments
from townhall.platform.clock import FrozenClock
from townhall.shipping import events as shipping


class Behaviour(Enum):
    SUCCEED = "succeed"
    FAIL = "fail"
    HANG = "hang"  # never answers and does nothing (the simulator's silent card)


FORWARD = {
    inventory.ReserveStock: Step.RESERVE_STOCK,
    payments.CapturePayment: Step.CAPTURE_PAYMENT,
    shipping.CreateShipment: Step.CREATE_SHIPMENT,
}
BACKWARD = {
    inventory.ReleaseStock: Step.RESERVE_STOCK,
    payments.RefundPayment: Step.CAPTURE_PAYMENT,
    shipping.CancelShipment: Step.CREATE_SHIPMENT,
}
FORWARD_REPLY = {
    inventory.StockReserved: Step.RESERVE_STOCK,
    payments.PaymentCaptured: Step.CAPTURE_PAYMENT,
    shipping.ShipmentCreated: Step.CREATE_SHIPMENT,
}
TIMEOUT_OF = {
    FailureReason.STOCK_TIMEOUT: Step.RESERVE_STOCK,
    FailureReason.PAYMENT_TIMEOUT: Step.CAPTURE_PAYMENT,
    FailureReason.SHIPPING_TIMEOUT: Step.CREATE_SHIPMENT,
}
FAILURE_OF = {
    FailureReason.OUT_OF_STOCK: Step.RESERVE_STOCK,
    FailureReason.PAYMENT_DECLINED: Step.CAPTURE_PAYMENT,
    FailureReason.SHIPPING_FAILED: Step.CREATE_SHIPMENT,
}


@dataclass
class Participants:
    behaviour: dict[Step, Behaviour]
    decline_code: str
    answers: dict[Step, Reply | None] = field(default_factory=dict)
    took_effect: set[Step] = field(default_factory=set)
    undone: set[Step] = field(default_factory=set)
    captured_cents: int = 0
    refunded_cents: int = 0

    def held(self, step: Step) -> bool:
        return step in self.took_effect and step not in self.undone

    def receive(self, command) -> Reply | None:
        order_id = command.order_id
        if type(command) in FORWARD:
            step = FORWARD[type(command)]
            if step not in self.answers:
                self.answers[step] = self._first(step, command)
            return self.answers[step]
        step = BACKWARD[type(command)]
        if self.held(step):
            self.undone.add(step)
            if step is Step.CAPTURE_PAYMENT:
                self.refunded_cents += command.amount_cents
        match command:
            case inventory.ReleaseStock():
                return inventory.StockReleased(order_id)
            case payments.RefundPayment(payment_id=payment_id, amount_cents=cents):
                return payments.PaymentRefunded(order_id, payment_id, cents, "EUR")
            case _:
                return shipping.ShipmentCancelled(order_id, command.shipment_id)

    def _first(self, step: Step, command) -> Reply | None:
        behaviour = self.behaviour[step]
        if behaviour is Behaviour.HANG:
            return None
        if behaviour is Behaviour.FAIL:
            return self._failure(step, command.order_id)
        self.took_effect.add(step)
        match command:
            case inventory.ReserveStock(order_id=order_id):
                return inventory.StockReserved(order_id)
            case payments.CapturePayment(order_id=order_id, amount_cents=cents):
                self.captured_cents += cents
                return payments.PaymentCaptured(order_id, "pay-1", cents, "EUR")
            case _:
                return shipping.ShipmentCreated(command.order_id, "ship-1")

    def _failure(self, step: Step, order_id: str) -> Reply:
        if step is Step.RESERVE_STOCK:
            return inventory.StockReservationFailed(order_id, ("tee-m",))
        if step is Step.CAPTURE_PAYMENT:
            return payments.PaymentFailed(order_id, self.decline_code)
        return shipping.ShipmentFailed(order_id, "undeliverable")


class World:
    """The saga, the participants, the replies in flight, every timer armed, and the order
    aggregate fed as the orchestrator will feed it."""

    def __init__(self, participants: Participants) -> None:
        self.clock = FrozenClock(T0)
        self.participants = participants
        order = placed_order(self.clock)
        self.order: Order = order
        self.in_flight: list[Reply] = []
        self.timers: list[DeadlinePassed] = []
        self.log: list[tuple[Input | None, Handled]] = []
        first = start(order, CARD, self.clock)
        self.saga: Saga = first.saga
        self._dispatch(None, first)

    def send(self, message: Input) -> None:
        self.clock.advance(milliseconds=1)
        before = self.saga
        handled = handle(before, message, self.clock)
        if handled.note not in (Note.APPLIED, Note.LATE_SUCCESS):
            assert handled.saga == before and handled.commands == () and handled.finished is None
        # The same input again right away never moves the saga: every input is idempotent.
        again = handle(handled.saga, message, self.clock)
        assert again.note not in (Note.APPLIED, Note.LATE_SUCCESS)
        assert again.saga == handled.saga and again.commands == ()
        stored = json.loads(json.dumps(handled.saga.to_data()))
        assert Saga.from_data(stored) == handled.saga
        self.saga = handled.saga
        self._dispatch(message, handled)
        self._feed_order(message, handled)

    def _dispatch(self, message: Input | None, handled: Handled) -> None:
        self.log.append((message, handled))
        for command in handled.commands:
            reply = self.participants.receive(command)
            if reply is not None:
                self.in_flight.append(reply)
        waiting = handled.saga.waiting
        if waiting is not None and waiting.timer not in self.timers:
            self.timers.append(waiting.timer)

    def _apply(self, change) -> None:
        for event in change.events:
            assert event_from_data(event.type, json.loads(json.dumps(event.to_data()))) == event
            self.order = evolve(self.order, event)

    def _feed_order(self, message: Input, handled: Handled) -> None:
        if isinstance(message, CancelOrder):
            if handled.note is Note.APPLIED:
                self._apply(self.order.request_cancel(self.clock))
        elif not isinstance(message, DeadlinePassed):
            self._apply(self.order.record(message, self.clock))
        outcome = handled.finished
        if outcome is None:
            return
        if outcome.status is OrderStatus.CONFIRMED:
            self._apply(self.order.confirm(self.clock))
        elif outcome.status is OrderStatus.CANCELLED:
            self._apply(self.order.cancel(self.clock))
        else:
            assert outcome.reason is not None
            self._apply(self.order.fail(outcome.reason, self.clock, outcome.decline_code))

    def drain(self) -> None:
        """The network delivers everything in the end; timers fire when nothing else comes."""
        for _ in range(100):
            if self.in_flight:
                self.send(self.in_flight.pop(0))
            elif self.saga.waiting is not None:
                self.send(self.saga.waiting.timer)
            else:
                return
        raise AssertionError("the saga did not settle")


# Success three times as likely as each other answer, so that many sagas reach the later steps.
answers = st.sampled_from([Behaviour.SUCCEED] * 3 + [Behaviour.FAIL, Behaviour.HANG])
behaviours = st.fixed_dictionaries({step: answers for step in STEPS})


@settings(max_examples=300, deadline=None)
@given(behaviours, st.sampled_from(["card_declined", "insufficient_funds"]), st.data())
def test_any_delivery_of_replies_ends_in_one_terminal_state_consistent_with_them(
    behaviour, decline_code, data
):
    participants = Participants(behaviour, decline_code)
    world = World(participants)
    for _ in range(data.draw(st.integers(0, 30), label="moves")):
        # Mostly deliveries, so that sagas get far before a timer or a cancel cuts in.
        moves = (
            ["cancel"] + ["deliver"] * 6 * bool(world.in_flight) + ["timer"] * bool(world.timers)
        )
        move = data.draw(st.sampled_from(moves), label="move")
        if move == "deliver":
            index = data.draw(st.integers(0, len(world.in_flight) - 1), label="reply")
            keep = data.draw(st.booleans(), label="deliver again later")
            reply = world.in_flight[index] if keep else world.in_flight.pop(index)
            world.send(reply)
        elif move == "timer":
            world.send(data.draw(st.sampled_from(world.timers), label="timer"))
        else:
            world.send(CancelOrder())
    world.drain()

    saga, log = world.saga, world.log
    outcome = saga.outcome
    assert saga.settled and outcome is not None
    hypothesis.event(f"ends {outcome.status.value} {outcome.reason or ''}")
    for note in {handled.note for _, handled in log}:
        hypothesis.event(f"saw {note.value}")
    # One end, told once, and the order aggregate ends the same way.
    assert [handled.finished for _, handled in log if handled.finished] == [outcome]
    assert world.order.status is outcome.status
    assert (world.order.reason, world.order.decline_code) == (outcome.reason, outcome.decline_code)

    applied = [(message, handled) for message, handled in log if handled.note is Note.APPLIED]
    cancel_accepted = any(isinstance(message, CancelOrder) for message, _ in applied)
    sent = [command for _, handled in log for command in handled.commands]
    requested = {FORWARD[type(command)] for command in sent if type(command) in FORWARD}

    # The end is consistent with what the participants did and when the saga heard of it.
    if outcome.status is OrderStatus.CONFIRMED:
        assert all(behaviour[step] is Behaviour.SUCCEED for step in STEPS)
        assert not cancel_accepted
        assert all(participants.held(step) for step in STEPS)
        assert participants.captured_cents - participants.refunded_cents == 7000
        assert world.order.stock_held and world.order.money_held and world.order.shipment_exists
    else:
        assert not any(participants.held(step) for step in STEPS)
        assert participants.captured_cents == participants.refunded_cents
    if outcome.status is OrderStatus.FAILED:
        assert not cancel_accepted
        failed = TIMEOUT_OF.get(outcome.reason) or FAILURE_OF[outcome.reason]
        position = STEPS.index(failed)
        assert all(behaviour[step] is Behaviour.SUCCEED for step in STEPS[:position])
        assert requested == set(STEPS[: position + 1])
        if outcome.reason in TIMEOUT_OF:
            assert DeadlinePassed(failed) in [message for message, _ in applied]
        else:
            assert behaviour[failed] is Behaviour.FAIL
            expected_code = decline_code if failed is Step.CAPTURE_PAYMENT else None
            assert outcome.decline_code == expected_code
    if outcome.status is OrderStatus.CANCELLED:
        assert cancel_accepted
        assert Step.CREATE_SHIPMENT not in requested

    # Every step that took effect is compensated exactly once (retries after a compensation's
    # deadline repeat the same command), and those the saga heard of in time in reverse order.
    first_sends = [
        BACKWARD[type(command)]
        for message, handled in log
        if not (isinstance(message, DeadlinePassed) and message.compensating)
        for command in handled.commands
        if type(command) in BACKWARD
    ]
    expected = set() if outcome.status is OrderStatus.CONFIRMED else participants.took_effect
    assert sorted(first_sends) == sorted(expected)
    in_time = {
        FORWARD_REPLY[type(message)]
        for message, handled in applied
        if type(message) in FORWARD_REPLY
    }
    assert [step for step in first_sends if step in in_time] == sorted(
        in_time & set(first_sends), key=STEPS.index, reverse=True
    )


# --- the order aggregate alone --------------------------------------------------------------

REPLIES = [
    inventory.StockReserved("o"),
    inventory.StockReservationFailed("o", ("tee-m",)),
    inventory.StockReleased("o"),
    payments.PaymentCaptured("o", "pay-1", 7000, "EUR"),
    payments.PaymentFailed("o", "card_declined"),
    payments.PaymentRefunded("o", "pay-1", 7000, "EUR"),
    shipping.ShipmentCreated("o", "ship-1"),
    shipping.ShipmentFailed("o", "undeliverable"),
    shipping.ShipmentCancelled("o", "ship-1"),
]
COMMANDS = [*REPLIES, "request_cancel", "confirm", "fail", "cancel"]


def command(order: Order, what, clock: FrozenClock):
    match what:
        case "request_cancel":
            return order.request_cancel(clock)
        case "confirm":
            return order.confirm(clock)
        case "fail":
            return order.fail(FailureReason.PAYMENT_TIMEOUT, clock)
        case "cancel":
            return order.cancel(clock)
    return order.record(what, clock)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(COMMANDS), max_size=40))
def test_any_sequence_of_facts_and_commands_keeps_the_order_consistent(commands):
    clock = FrozenClock(T0)
    placed = order = placed_order(clock)
    history = [order]
    recorded = []
    for what in commands:
        clock.advance(milliseconds=1)
        try:
            change = command(order, what, clock)
        except (CannotCancel, CannotConfirm):  # a buyer too late, or a saga bug
            continue
        assert (change.ignored is None) == bool(change.events)  # no events: it says why
        for event in change.events:
            order = evolve(order, event)
            recorded.append(event)
            history.append(order)
        if change.events:
            # The same command again right away makes nothing: facts and ends are idempotent.
            assert command(order, what, clock).ignored is Ignored.DUPLICATE

    terminal = [
        e for e in recorded if e.type in ("OrderConfirmed", "OrderFailed", "OrderCancelled")
    ]
    assert len(terminal) <= 1
    if terminal:
        assert recorded[-1] is terminal[0]  # a final order changes no more
        assert order.status.is_terminal
    if order.status is OrderStatus.CONFIRMED:
        assert order.stock_held and order.money_held and order.shipment_exists
    assert len({e.type for e in recorded}) == len(recorded)  # each fact at most once
    assert order.version == 1 + len(recorded)
    assert fold(recorded, start=placed) == order
    for state, event in zip(history[1:], recorded, strict=True):
        assert fold(recorded, start=placed, until=event.at) == state
    assert fold(recorded, start=placed, until=T0) == placed
