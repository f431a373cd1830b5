"""The order saga as a pure state machine, for the orchestrator: given the saga and one input (a
participant's reply, a deadline passing, the buyer's cancel), the next saga, the commands to
send, and the outcome once the saga ends. No I/O; the orchestrator persists `Saga`, sends the
commands, keeps a durable timer at `Saga.waiting.deadline` and feeds back what happens.

Steps run one at a time: reserve stock, capture payment, create shipment. A failure or a
timeout winds the saga down: the steps that succeeded are compensated one at a time in reverse
order (refund the payment, then release the stock), and then the order has its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from townhall.inventory import events as inventory
from townhall.orders.domain import Address, FailureReason, Order, OrderLine, OrderStatus, Reply
from townhall.payments import events as payments
from townhall.platform.clock import Clock
from townhall.shipping import events as shipping


class Step(StrEnum):
    RESERVE_STOCK = "reserve_stock"
    CAPTURE_PAYMENT = "capture_payment"
    CREATE_SHIPMENT = "create_shipment"


STEPS = tuple(Step)  # in the order they run; compensations run in the reverse one


class StepStatus(StrEnum):
    NOT_STARTED = "not_started"
    REQUESTED = "requested"  # its command is sent; the saga waits for the reply
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # the saga stopped waiting: it may still succeed, late
    COMPENSATING = "compensating"  # its compensation is sent or queued
    COMPENSATED = "compensated"


class Phase(StrEnum):
    RUNNING = "running"  # a step is under way
    COMPENSATING = "compensating"  # the outcome is decided; compensations run
    FINISHED = "finished"  # the order has its end (a late success may still be undone)


class Answer(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"


class Note(StrEnum):
    """What the saga made of an input; the orchestrator records it in the timeline."""

    APPLIED = "applied"  # it moved the saga
    DUPLICATE = "duplicate"  # already known: changes nothing
    LATE = "late"  # the saga no longer waits for it: recorded, changes nothing
    LATE_SUCCESS = "late_success"  # a step succeeded after the saga gave it up: undo it
    STALE_TIMER = "stale_timer"  # the deadline of something already answered
    UNEXPECTED = "unexpected"  # a reply to nothing the saga asked for
    REFUSED = "refused"  # a cancel that comes too late; `Handled.refusal` says why


# (the step's status, what its participant answered) -> (its new status, note). Any pair not
# listed is UNEXPECTED. What an APPLIED or LATE_SUCCESS does next is in `_answer`.
S, A, N = StepStatus, Answer, Note
TRANSITIONS: Mapping[tuple[StepStatus, Answer], tuple[StepStatus, Note]] = {
    (S.REQUESTED, A.SUCCEEDED): (S.SUCCEEDED, N.APPLIED),
    (S.REQUESTED, A.FAILED): (S.FAILED, N.APPLIED),
    (S.SUCCEEDED, A.SUCCEEDED): (S.SUCCEEDED, N.DUPLICATE),
    (S.SUCCEEDED, A.FAILED): (S.SUCCEEDED, N.LATE),
    (S.FAILED, A.SUCCEEDED): (S.COMPENSATING, N.LATE_SUCCESS),
    (S.FAILED, A.FAILED): (S.FAILED, N.DUPLICATE),
    (S.TIMED_OUT, A.SUCCEEDED): (S.COMPENSATING, N.LATE_SUCCESS),
    (S.TIMED_OUT, A.FAILED): (S.TIMED_OUT, N.LATE),
    (S.COMPENSATING, A.SUCCEEDED): (S.COMPENSATING, N.DUPLICATE),
    (S.COMPENSATING, A.FAILED): (S.COMPENSATING, N.LATE),
    # Only for the compensation the saga waits for; one still queued is UNEXPECTED.
    (S.COMPENSATING, A.COMPENSATED): (S.COMPENSATED, N.APPLIED),
    (S.COMPENSATED, A.SUCCEEDED): (S.COMPENSATED, N.DUPLICATE),
    (S.COMPENSATED, A.FAILED): (S.COMPENSATED, N.LATE),
    (S.COMPENSATED, A.COMPENSATED): (S.COMPENSATED, N.DUPLICATE),
}
del S, A, N

REPLIES: Mapping[type[Reply], tuple[Step, Answer]] = {
    inventory.StockReserved: (Step.RESERVE_STOCK, Answer.SUCCEEDED),
    inventory.StockReservationFailed: (Step.RESERVE_STOCK, Answer.FAILED),
    inventory.StockReleased: (Step.RESERVE_STOCK, Answer.COMPENSATED),
    payments.PaymentCaptured: (Step.CAPTURE_PAYMENT, Answer.SUCCEEDED),
    payments.PaymentFailed: (Step.CAPTURE_PAYMENT, Answer.FAILED),
    payments.PaymentRefunded: (Step.CAPTURE_PAYMENT, Answer.COMPENSATED),
    shipping.ShipmentCreated: (Step.CREATE_SHIPMENT, Answer.SUCCEEDED),
    shipping.ShipmentFailed: (Step.CREATE_SHIPMENT, Answer.FAILED),
    shipping.ShipmentCancelled: (Step.CREATE_SHIPMENT, Answer.COMPENSATED),
}

_FAILURES = {
    Step.RESERVE_STOCK: FailureReason.OUT_OF_STOCK,
    Step.CAPTURE_PAYMENT: FailureReason.PAYMENT_DECLINED,
    Step.CREATE_SHIPMENT: FailureReason.SHIPPING_FAILED,
}
_TIMEOUTS = {
    Step.RESERVE_STOCK: FailureReason.STOCK_TIMEOUT,
    Step.CAPTURE_PAYMENT: FailureReason.PAYMENT_TIMEOUT,
    Step.CREATE_SHIPMENT: FailureReason.SHIPPING_TIMEOUT,
}


# --- inputs and outputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeadlinePassed:
    """The durable timer of `Saga.waiting` fired (`Waiting.timer` is the one to arm)."""

    step: Step
    compensating: bool = False
    attempt: int = 1


@dataclass(frozen=True)
class CancelOrder:
    """The buyer asks to cancel."""


Input = Reply | DeadlinePassed | CancelOrder
Command = (
    inventory.ReserveStock
    | inventory.ReleaseStock
    | payments.CapturePayment
    | payments.RefundPayment
    | shipping.CreateShipment
    | shipping.CancelShipment
)


@dataclass(frozen=True)
class Outcome:
    status: OrderStatus
    reason: FailureReason | None = None
    decline_code: str | None = None


CONFIRMED = Outcome(OrderStatus.CONFIRMED)
CANCELLED = Outcome(OrderStatus.CANCELLED)


@dataclass(frozen=True)
class Timeouts:
    """How long each step may take; a compensation that takes longer is sent again."""

    reserve_stock: timedelta = timedelta(seconds=10)
    capture_payment: timedelta = timedelta(seconds=30)
    create_shipment: timedelta = timedelta(seconds=30)
    compensation: timedelta = timedelta(seconds=30)

    def of(self, step: Step, *, compensating: bool) -> timedelta:
        if compensating:
            return self.compensation
        duration: timedelta = getattr(self, step.value)
        return duration


@dataclass(frozen=True)
class Waiting:
    """The one command the saga waits on: a step or a step's compensation, its attempt (a
    compensation is sent again, with the same idempotency key, when its deadline passes)."""

    step: Step
    compensating: bool
    attempt: int
    deadline: datetime

    @property
    def timer(self) -> DeadlinePassed:
        return DeadlinePassed(self.step, self.compensating, self.attempt)


@dataclass(frozen=True)
class SagaOrder:
    """What the saga's commands need of the order."""

    order_id: str
    lines: tuple[OrderLine, ...]
    total_cents: int
    currency: str
    shipping_address: Address
    payment_method: str


@dataclass(frozen=True)
class Saga:
    order: SagaOrder
    timeouts: Timeouts
    steps: Mapping[Step, StepStatus]
    phase: Phase = Phase.RUNNING
    waiting: Waiting | None = None
    queue: tuple[Step, ...] = ()  # compensations to send after the one waiting, next first
    outcome: Outcome | None = None  # decided on a failure or an accepted cancel
    cancel_requested: bool = False
    payment_id: str | None = None
    shipment_id: str | None = None

    @property
    def settled(self) -> bool:
        """Finished, with nothing left to send or wait for."""
        return self.phase is Phase.FINISHED and self.waiting is None and not self.queue

    def to_data(self) -> dict[str, Any]:
        """The saga as JSON-ready data, for the orchestrator to keep; `from_data` reads it."""
        waiting = self.waiting
        return {
            "order": asdict(self.order),
            "timeouts": {k: v.total_seconds() for k, v in vars(self.timeouts).items()},
            "steps": {step.value: status.value for step, status in self.steps.items()},
            "phase": self.phase.value,
            "waiting": None
            if waiting is None
            else {**asdict(waiting), "deadline": waiting.deadline.isoformat()},
            "queue": [step.value for step in self.queue],
            "outcome": None if self.outcome is None else asdict(self.outcome),
            "cancel_requested": self.cancel_requested,
            "payment_id": self.payment_id,
            "shipment_id": self.shipment_id,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Saga:
        order, waiting, outcome = data["order"], data["waiting"], data["outcome"]
        return cls(
            order=SagaOrder(
                **{
                    **order,
                    "lines": tuple(OrderLine(**line) for line in order["lines"]),
                    "shipping_address": Address(**order["shipping_address"]),
                }
            ),
            timeouts=Timeouts(**{k: timedelta(seconds=v) for k, v in data["timeouts"].items()}),
            steps={Step(step): StepStatus(status) for step, status in data["steps"].items()},
            phase=Phase(data["phase"]),
            waiting=None
            if waiting is None
            else Waiting(
                step=Step(waiting["step"]),
                compensating=waiting["compensating"],
                attempt=waiting["attempt"],
                deadline=datetime.fromisoformat(waiting["deadline"]),
            ),
            queue=tuple(Step(step) for step in data["queue"]),
            outcome=None
            if outcome is None
            else Outcome(
                status=OrderStatus(outcome["status"]),
                reason=None if outcome["reason"] is None else FailureReason(outcome["reason"]),
                decline_code=outcome["decline_code"],
            ),
            cancel_requested=data["cancel_requested"],
            payment_id=data["payment_id"],
            shipment_id=data["shipment_id"],
        )


@dataclass(frozen=True)
class Handled:
    """The saga after one input, the commands to send now, and `finished`: the order's end,
    given once, by the input that finished the saga."""

    saga: Saga
    note: Note
    commands: tuple[Command, ...] = ()
    finished: Outcome | None = None
    refusal: str | None = None


# --- the machine ----------------------------------------------------------------------------


def start(
    order: Order, payment_method: str, clock: Clock, timeouts: Timeouts | None = None
) -> Handled:
    """A new saga for a placed order: its first command is to reserve the stock."""
    saga = Saga(
        order=SagaOrder(
            order_id=str(order.id),
            lines=order.lines,
            total_cents=order.total_cents,
            currency=order.currency,
            shipping_address=order.shipping_address,
            payment_method=payment_method,
        ),
        timeouts=timeouts or Timeouts(),
        steps=dict.fromkeys(STEPS, StepStatus.NOT_STARTED),
    )
    return _send(saga, STEPS[0], compensating=False, attempt=1, now=clock.now())


def handle(saga: Saga, message: Input, clock: Clock) -> Handled:
    """The saga after `message`. Total: every input in every state gives an answer, and an
    input that does not move the saga (any note but APPLIED and LATE_SUCCESS) leaves it as is
    and sends nothing."""
    now = clock.now()
    if isinstance(message, CancelOrder):
        return _cancel(saga)
    if isinstance(message, DeadlinePassed):
        return _deadline(saga, message, now)
    step, answer = REPLIES[type(message)]
    return _answer(saga, step, answer, message, now)


def _answer(saga: Saga, step: Step, answer: Answer, reply: Reply, now: datetime) -> Handled:
    status = saga.steps[step]
    if answer is Answer.COMPENSATED and status is StepStatus.COMPENSATING:
        waiting = saga.waiting
        if waiting is None or (waiting.step, waiting.compensating) != (step, True):
            return Handled(saga, Note.UNEXPECTED)  # queued, not sent: not ours to count
    new_status, note = TRANSITIONS.get((status, answer), (status, Note.UNEXPECTED))
    if note not in (Note.APPLIED, Note.LATE_SUCCESS):
        return Handled(saga, note)
    saga = replace(saga, steps={**saga.steps, step: new_status})
    match reply:
        case payments.PaymentCaptured(payment_id=payment_id):
            saga = replace(saga, payment_id=payment_id)
        case shipping.ShipmentCreated(shipment_id=shipment_id):
            saga = replace(saga, shipment_id=shipment_id)
    if note is Note.LATE_SUCCESS:
        # Queued in reverse step order among those not yet sent; one already sent stays.
        queue = tuple(sorted({*saga.queue, step}, key=STEPS.index, reverse=True))
        saga = replace(saga, queue=queue)
        handled = Handled(saga, note) if saga.waiting else _next_compensation(saga, now)
        return replace(handled, note=note)
    saga = replace(saga, waiting=None)
    if answer is Answer.COMPENSATED:
        return _next_compensation(saga, now)
    if answer is Answer.FAILED:
        code = reply.decline_code if isinstance(reply, payments.PaymentFailed) else None
        return _wind_down(saga, Outcome(OrderStatus.FAILED, _FAILURES[step], code), now)
    if saga.cancel_requested:
        return _wind_down(saga, CANCELLED, now)
    if step is STEPS[-1]:
        return _finish(saga, CONFIRMED)
    return _send(saga, STEPS[STEPS.index(step) + 1], compensating=False, attempt=1, now=now)


def _deadline(saga: Saga, timer: DeadlinePassed, now: datetime) -> Handled:
    waiting = saga.waiting
    if waiting is None or waiting.timer != timer:
        return Handled(saga, Note.STALE_TIMER)
    if timer.compensating:
        return _send(saga, timer.step, compensating=True, attempt=timer.attempt + 1, now=now)
    saga = replace(saga, waiting=None, steps={**saga.steps, timer.step: StepStatus.TIMED_OUT})
    return _wind_down(saga, Outcome(OrderStatus.FAILED, _TIMEOUTS[timer.step]), now)


def _cancel(saga: Saga) -> Handled:
    """Accepted while no shipment is under way: the step in flight still answers (so a payment
    being captured is refunded, not left behind), then the saga winds down to CANCELLED."""
    if saga.cancel_requested:
        return Handled(saga, Note.DUPLICATE)
    outcome = saga.outcome
    refusal = None
    if outcome is not None and outcome.status is OrderStatus.CONFIRMED:
        refusal = "the order's shipment exists"
    elif outcome is not None:
        state = "has failed" if saga.phase is Phase.FINISHED else "is failing"
        refusal = f"the order {state} ({outcome.reason})"
    elif saga.steps[Step.CREATE_SHIPMENT] is not StepStatus.NOT_STARTED:
        refusal = "the order's shipment is being created"
    if refusal is not None:
        return Handled(saga, Note.REFUSED, refusal=refusal)
    return Handled(replace(saga, cancel_requested=True), Note.APPLIED)


def _wind_down(saga: Saga, outcome: Outcome, now: datetime) -> Handled:
    """Decide the outcome (a requested cancel wins) and compensate every step that
    succeeded, last first."""
    done = tuple(step for step in reversed(STEPS) if saga.steps[step] is StepStatus.SUCCEEDED)
    saga = replace(
        saga,
        phase=Phase.COMPENSATING,
        outcome=CANCELLED if saga.cancel_requested else outcome,
        steps={**saga.steps, **dict.fromkeys(done, StepStatus.COMPENSATING)},
        queue=done,
    )
    return _next_compensation(saga, now)


def _next_compensation(saga: Saga, now: datetime) -> Handled:
    if saga.queue:
        step, *rest = saga.queue
        saga = replace(saga, queue=tuple(rest))
        return _send(saga, step, compensating=True, attempt=1, now=now)
    if saga.phase is Phase.FINISHED:
        return Handled(saga, Note.APPLIED)
    assert saga.outcome is not None  # decided when the wind-down began
    return _finish(saga, saga.outcome)


def _finish(saga: Saga, outcome: Outcome) -> Handled:
    saga = replace(saga, phase=Phase.FINISHED, outcome=outcome)
    return Handled(saga, Note.APPLIED, finished=outcome)


def _send(saga: Saga, step: Step, *, compensating: bool, attempt: int, now: datetime) -> Handled:
    deadline = now + saga.timeouts.of(step, compensating=compensating)
    steps = saga.steps if compensating else {**saga.steps, step: StepStatus.REQUESTED}
    saga = replace(saga, steps=steps, waiting=Waiting(step, compensating, attempt, deadline))
    return Handled(saga, Note.APPLIED, (command_for(saga, step, compensating=compensating),))


COMPENSATIONS = {
    Step.RESERVE_STOCK: "release_stock",
    Step.CAPTURE_PAYMENT: "refund_payment",
    # Only for a shipment created after its step timed out: a buyer cannot cancel one.
    Step.CREATE_SHIPMENT: "cancel_shipment",
}


def idempotency_key(order_id: str, step: Step, *, compensating: bool) -> str:
    """One key per saga step or compensation, the same on every retry of it."""
    return f"order-{order_id}.{COMPENSATIONS[step] if compensating else step.value}"


def command_for(saga: Saga, step: Step, *, compensating: bool) -> Command:
    order = saga.order
    key = idempotency_key(order.order_id, step, compensating=compensating)
    match step, compensating:
        case Step.RESERVE_STOCK, False:
            stock = tuple(inventory.StockLine(line.sku, line.quantity) for line in order.lines)
            return inventory.ReserveStock(order.order_id, stock)
        case Step.RESERVE_STOCK, True:
            return inventory.ReleaseStock(order.order_id)
        case Step.CAPTURE_PAYMENT, False:
            return payments.CapturePayment(
                order.order_id, order.total_cents, order.currency, order.payment_method, key
            )
        case Step.CAPTURE_PAYMENT, True:
            assert saga.payment_id is not None  # compensated only once captured
            return payments.RefundPayment(
                order.order_id, saga.payment_id, order.total_cents, order.currency, key
            )
        case Step.CREATE_SHIPMENT, False:
            shipped = tuple(shipping.ShippedLine(line.sku, line.quantity) for line in order.lines)
            address = shipping.Address(**asdict(order.shipping_address))
            return shipping.CreateShipment(order.order_id, address, shipped)
        case _:
            assert saga.shipment_id is not None  # compensated only once created
            return shipping.CancelShipment(order.order_id, saga.shipment_id)
