"""The orchestrator on in-memory ports: what it commits for each input (the order's events,
the saga, its timer, the timeline and the commands to send, together), duplicates and
reordered replies, late successes after a timeout, timers that fire after a restart, cancels.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from support.order_fakes import (
    MemoryMessages,
    MemoryOrders,
    MemorySagas,
    MemoryTimeline,
    MemoryTransactions,
)
from support.orders import ADDRESS, CARD, LINES, T0
from townhall.inventory import events as inventory
from townhall.orders import events as public
from townhall.orders.consumers import SagaTimers, saga_consumers
from townhall.orders.domain import FailureReason, InvalidOrder, OrderLine, OrderStatus
from townhall.orders.saga import Note, Phase, Step, StepStatus, Timeouts
from townhall.orders.service import (
    CancelRefused,
    NewOrder,
    Orchestrator,
    OrderNotFound,
    Received,
)
from townhall.payments import events as payments
from townhall.platform.clock import FrozenClock
from townhall.platform.ids import new_id_str
from townhall.platform.messaging import Envelope
from townhall.shipping import events as shipping

TIMEOUTS = Timeouts(
    reserve_stock=timedelta(seconds=1),
    capture_payment=timedelta(seconds=2),
    create_shipment=timedelta(seconds=3),
    compensation=timedelta(seconds=4),
)


class World:
    """The orchestrator on fakes; `restart()` builds a new one on the same stores."""

    def __init__(self) -> None:
        self.clock = FrozenClock(T0)
        self.tx = MemoryTransactions()
        self.orders = MemoryOrders()
        self.sagas = MemorySagas()
        self.timeline = MemoryTimeline()
        self.messages = MemoryMessages()
        self.orchestrator = self._build()

    def _build(self) -> Orchestrator:
        return Orchestrator(
            self.tx,
            self.orders,
            self.sagas,
            self.timeline,
            self.messages,
            self.clock,
            timeouts=TIMEOUTS,
        )

    def restart(self) -> None:
        self.orchestrator = self._build()

    async def place(self, card: str = CARD) -> str:
        order = await self.orchestrator.place(NewOrder("buyer-1", LINES, "EUR", ADDRESS, card))
        return str(order.id)

    async def reply(self, message):
        self.clock.advance(milliseconds=10)
        received = Received(new_id_str(), message.type, message.type.split(".")[0])
        return await self.orchestrator.handle(message, received)

    def sent(self, topic: str | None = None) -> list[str]:
        return [e.type for t, e in self.messages.sent if topic is None or t == topic]

    def commands(self) -> list[str]:
        return [e.type for t, e in self.messages.sent if t.endswith(".commands")]

    async def order(self, order_id: str):
        return await self.orchestrator.order(uuid.UUID(order_id))

    def facts(self, order_id: str) -> list[str]:
        stream = self.orders.streams[uuid.UUID(order_id)]
        return [event.type for event in stream.events]


@pytest.fixture
def world() -> World:
    return World()


async def test_placing_commits_the_order_its_saga_timer_and_first_command_together(world):
    order_id = await world.place()
    assert world.tx.commits == 1
    assert world.facts(order_id) == ["OrderPlaced"]
    stored = world.sagas.rows[order_id]
    assert stored.version == 1
    assert stored.saga.waiting is not None
    assert stored.saga.waiting.step is Step.RESERVE_STOCK
    assert stored.saga.waiting.deadline == T0 + TIMEOUTS.reserve_stock
    (_, placed), (topic, reserve) = world.messages.sent
    assert (placed.type, topic, reserve.type) == (
        public.OrderPlaced.type,
        inventory.COMMAND_TOPIC,
        inventory.ReserveStock.type,
    )
    assert reserve.key == placed.key == order_id
    assert inventory.ReserveStock.from_payload(reserve.payload) == inventory.ReserveStock(
        order_id, tuple(inventory.StockLine(line.sku, line.quantity) for line in LINES)
    )
    assert reserve.headers == {"correlation_id": order_id, "causation_id": str(placed.id)}
    assert [(e.message_type, e.outcome) for e in world.timeline.entries] == [
        (public.OrderPlaced.type, "sent"),
        (inventory.ReserveStock.type, "sent"),
    ]


async def test_an_invalid_order_is_refused_naming_the_field_and_nothing_is_written(world):
    with pytest.raises(InvalidOrder) as refused:
        await world.orchestrator.place(
            NewOrder("buyer-1", [OrderLine("tee-m", 0, 1500)], "EUR", ADDRESS, CARD)
        )
    assert refused.value.field == "items.0.quantity"
    assert (world.orders.streams, world.sagas.rows, world.messages.sent) == ({}, {}, [])


async def test_a_saga_that_succeeds_confirms_the_order_once_and_clears_its_timer(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    await world.reply(payments.PaymentCaptured(order_id, "pay-1", 7000, "EUR"))
    handled = await world.reply(shipping.ShipmentCreated(order_id, "ship-1"))
    assert handled is not None and handled.note is Note.APPLIED
    assert world.commands() == [
        inventory.ReserveStock.type,
        payments.CapturePayment.type,
        shipping.CreateShipment.type,
    ]
    assert world.sent(public.TOPIC) == [public.OrderPlaced.type, public.OrderConfirmed.type]
    assert world.facts(order_id) == [
        "OrderPlaced",
        "StockReserved",
        "PaymentCaptured",
        "ShipmentCreated",
        "OrderConfirmed",
    ]
    order = await world.order(order_id)
    assert order.status is OrderStatus.CONFIRMED and order.version == 5
    assert world.sagas.rows[order_id].saga.settled
    world.clock.advance(hours=1)
    assert await world.orchestrator.fire_due() == 0  # nothing left to wait for


async def test_the_capture_command_carries_the_total_the_card_and_the_step_key(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    topic, capture = world.messages.sent[-1]
    assert topic == payments.COMMAND_TOPIC
    assert payments.CapturePayment.from_payload(capture.payload) == payments.CapturePayment(
        order_id, 7000, "EUR", CARD, f"order-{order_id}.capture_payment"
    )


async def test_a_repeated_reply_is_recorded_as_a_duplicate_and_changes_nothing(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    saga_before = world.sagas.rows[order_id].saga
    handled = await world.reply(inventory.StockReserved(order_id))
    assert handled is not None and handled.note is Note.DUPLICATE
    assert world.sagas.rows[order_id].saga == saga_before
    assert world.commands().count(payments.CapturePayment.type) == 1
    assert world.facts(order_id) == ["OrderPlaced", "StockReserved"]
    outcomes = [(e.message_type, e.outcome) for e in world.timeline.entries]
    assert outcomes[-3:] == [
        (inventory.StockReserved.type, "applied"),
        (payments.CapturePayment.type, "sent"),
        (inventory.StockReserved.type, "duplicate"),
    ]


async def test_two_copies_of_one_reply_handled_at_once_move_the_saga_once(world):
    order_id = await world.place()
    reply = inventory.StockReserved(order_id)
    envelope_id = new_id_str()
    received = Received(envelope_id, reply.type, "inventory")
    first, second = await asyncio.gather(
        world.orchestrator.handle(reply, received), world.orchestrator.handle(reply, received)
    )
    assert sorted([first.note, second.note]) == sorted([Note.APPLIED, Note.DUPLICATE])
    assert world.commands().count(payments.CapturePayment.type) == 1
    assert world.facts(order_id) == ["OrderPlaced", "StockReserved"]
    assert world.sagas.rows[order_id].version == 3  # placed, applied, duplicate
    assert [e.outcome for e in world.timeline.entries if e.message_id == envelope_id] == [
        "applied",
        "duplicate",
    ]


async def test_many_copies_at_once_still_send_the_next_command_once(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    reply = payments.PaymentCaptured(order_id, "pay-1", 7000, "EUR")
    received = Received(new_id_str(), reply.type, "payments")
    results = await asyncio.gather(*(world.orchestrator.handle(reply, received) for _ in range(8)))
    assert sorted(r.note for r in results) == [Note.APPLIED] + [Note.DUPLICATE] * 7
    assert world.commands().count(shipping.CreateShipment.type) == 1


async def test_reordered_and_stale_replies_end_the_order_as_the_replies_say(world):
    order_id = await world.place()
    # A shipment reported before it was asked for: unexpected to the saga, which waits on.
    early = await world.reply(shipping.ShipmentFailed(order_id, "undeliverable_address"))
    assert early.note is Note.UNEXPECTED
    await world.reply(inventory.StockReserved(order_id))
    declined = await world.reply(payments.PaymentFailed(order_id, "insufficient_funds"))
    assert declined.note is Note.APPLIED
    # The stock reservation's copy, delayed until after the payment's answer.
    late_copy = await world.reply(inventory.StockReserved(order_id))
    assert late_copy.note is Note.DUPLICATE
    await world.reply(inventory.StockReleased(order_id))
    await world.reply(inventory.StockReleased(order_id))
    order = await world.order(order_id)
    assert (order.status, order.reason, order.decline_code) == (
        OrderStatus.FAILED,
        FailureReason.PAYMENT_DECLINED,
        "insufficient_funds",
    )
    assert world.commands() == [
        inventory.ReserveStock.type,
        payments.CapturePayment.type,
        inventory.ReleaseStock.type,
    ]
    (_, failed) = world.messages.sent[-1]
    assert failed.type == public.OrderFailed.type
    assert failed.payload == {
        "order_id": order_id,
        "buyer_id": "buyer-1",
        "reason": "payment_declined",
        "decline_code": "insufficient_funds",
    }
    assert world.sent(public.TOPIC).count(public.OrderFailed.type) == 1


async def test_a_payment_that_times_out_is_compensated_and_its_late_success_refunded_once(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    world.clock.advance(seconds=1)
    assert await world.orchestrator.fire_due() == 0  # the capture's deadline is 2 s away
    world.clock.advance(seconds=2)
    assert await world.orchestrator.fire_due() == 1
    assert world.commands()[-1] == inventory.ReleaseStock.type
    await world.reply(inventory.StockReleased(order_id))
    order = await world.order(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)

    late = await world.reply(payments.PaymentCaptured(order_id, "pay-9", 7000, "EUR"))
    assert late.note is Note.LATE_SUCCESS
    again = await world.reply(payments.PaymentCaptured(order_id, "pay-9", 7000, "EUR"))
    assert again.note is Note.DUPLICATE
    refunds = [e for t, e in world.messages.sent if e.type == payments.RefundPayment.type]
    assert len(refunds) == 1
    assert refunds[0].payload["payment_id"] == "pay-9"
    assert refunds[0].payload["idempotency_key"] == f"order-{order_id}.refund_payment"
    await world.reply(payments.PaymentRefunded(order_id, "pay-9", 7000, "EUR"))
    # The order's end does not change, and is told once.
    order = await world.order(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)
    assert world.sent(public.TOPIC).count(public.OrderFailed.type) == 1
    assert world.sagas.rows[order_id].saga.settled
    timer = [e for e in world.timeline.entries if e.message_type == "orders.DeadlinePassed"]
    assert [(e.outcome, e.detail) for e in timer] == [("applied", "capture_payment, attempt 1")]
    (capture,) = [e for t, e in world.messages.sent if e.type == payments.CapturePayment.type]
    assert (timer[0].causation_id, timer[0].correlation_id) == (str(capture.id), order_id)


async def test_a_timer_armed_before_a_restart_fires_from_the_store(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    world.restart()  # the process that armed it is gone; its deadline is in the saga's row
    world.clock.advance(seconds=5)
    assert await world.orchestrator.fire_due() == 1
    saga = world.sagas.rows[order_id].saga
    assert saga.steps[Step.CAPTURE_PAYMENT] is StepStatus.TIMED_OUT
    assert saga.waiting is not None and saga.waiting.compensating
    assert world.commands()[-1] == inventory.ReleaseStock.type
    assert await world.orchestrator.fire_due() == 0  # the next deadline is the compensation's


async def test_a_compensation_past_its_deadline_is_sent_again_with_the_same_key(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    await world.reply(payments.PaymentFailed(order_id, "card_declined"))
    world.clock.advance(seconds=5)
    assert await world.orchestrator.fire_due() == 1
    releases = [e for t, e in world.messages.sent if e.type == inventory.ReleaseStock.type]
    assert [e.payload for e in releases] == [{"order_id": order_id}] * 2
    assert world.sagas.rows[order_id].saga.waiting.attempt == 2


async def test_a_saga_held_by_another_process_is_not_fired_twice(world):
    order_id = await world.place()
    world.clock.advance(seconds=2)
    async with world.tx.transaction() as other:
        assert await world.sagas.claim_due(other, order_id, world.clock.now()) is not None
        assert await world.orchestrator.fire_due() == 0
    assert await world.orchestrator.fire_due() == 1
    order = await world.order(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.STOCK_TIMEOUT)


async def test_a_cancel_waits_for_the_step_in_flight_then_compensates_and_cancels(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    assert await world.orchestrator.cancel(uuid.UUID(order_id)) is Note.APPLIED
    assert await world.orchestrator.cancel(uuid.UUID(order_id)) is Note.DUPLICATE
    await world.reply(payments.PaymentCaptured(order_id, "pay-1", 7000, "EUR"))
    assert world.commands()[-1] == payments.RefundPayment.type
    await world.reply(payments.PaymentRefunded(order_id, "pay-1", 7000, "EUR"))
    assert world.commands()[-1] == inventory.ReleaseStock.type
    await world.reply(inventory.StockReleased(order_id))
    order = await world.order(order_id)
    assert order.status is OrderStatus.CANCELLED
    assert world.facts(order_id).count("CancelRequested") == 1
    assert world.sent(public.TOPIC)[-1] == public.OrderCancelled.type
    assert shipping.CreateShipment.type not in world.commands()


async def test_a_cancel_once_the_shipment_is_asked_for_is_refused_and_recorded(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    await world.reply(payments.PaymentCaptured(order_id, "pay-1", 7000, "EUR"))
    with pytest.raises(CancelRefused, match="shipment is being created"):
        await world.orchestrator.cancel(uuid.UUID(order_id))
    entry = world.timeline.entries[-1]
    assert (entry.message_type, entry.outcome) == ("orders.CancelOrder", "refused")
    assert "CancelRequested" not in world.facts(order_id)


async def test_cancelling_an_unknown_order_is_not_found(world):
    with pytest.raises(OrderNotFound):
        await world.orchestrator.cancel(uuid.uuid4())


async def test_a_reply_for_an_order_without_a_saga_here_writes_nothing(world):
    handled = await world.reply(inventory.StockReserved(str(uuid.uuid4())))
    assert handled is None
    assert (world.timeline.entries, world.messages.sent) == ([], [])
    assert (world.orders.streams, world.sagas.rows) == ({}, {})


async def test_a_shipping_failure_refunds_then_releases_and_fails_the_order(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    await world.reply(payments.PaymentCaptured(order_id, "pay-1", 7000, "EUR"))
    await world.reply(shipping.ShipmentFailed(order_id, "undeliverable_address"))
    await world.reply(payments.PaymentRefunded(order_id, "pay-1", 7000, "EUR"))
    await world.reply(inventory.StockReleased(order_id))
    assert world.commands()[-2:] == [payments.RefundPayment.type, inventory.ReleaseStock.type]
    order = await world.order(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.SHIPPING_FAILED)
    assert world.sagas.rows[order_id].saga.phase is Phase.FINISHED


async def test_the_order_as_of_a_time_before_its_end_is_pending(world):
    order_id = await world.place()
    await world.reply(inventory.StockReserved(order_id))
    middle = world.clock.now()
    await world.reply(payments.PaymentFailed(order_id, "card_declined"))
    await world.reply(inventory.StockReleased(order_id))
    then = await world.orchestrator.order(uuid.UUID(order_id), as_of=middle)
    assert (then.status, then.version, then.stock_held) == (OrderStatus.PENDING, 2, True)
    with pytest.raises(OrderNotFound):
        await world.orchestrator.order(uuid.UUID(order_id), as_of=T0 - timedelta(seconds=1))


async def test_a_failing_timer_is_logged_and_does_not_hold_back_the_others(world, monkeypatch):
    first = await world.place()
    world.clock.advance(milliseconds=1)
    second = await world.place()
    world.clock.advance(seconds=2)
    real_load = world.orders.load

    async def broken_load(conn, order_id):
        if str(order_id) == first:
            raise RuntimeError("disk on fire")
        return await real_load(conn, order_id)

    monkeypatch.setattr(world.orders, "load", broken_load)
    assert await world.orchestrator.fire_due() == 1
    assert world.sagas.rows[second].saga.steps[Step.RESERVE_STOCK] is StepStatus.TIMED_OUT
    assert world.sagas.rows[first].saga.steps[Step.RESERVE_STOCK] is StepStatus.REQUESTED


class ScriptedTimers:
    """Finds `due` deadlines, `limit` per round, until none are left; `fail_first`: the first
    round raises instead."""

    def __init__(self, due: int, *, fail_first: bool = False) -> None:
        self.rounds = 0
        self.due = due
        self.fail_first = fail_first

    async def fire_due(self, *, limit: int = 100) -> int:
        self.rounds += 1
        if self.fail_first and self.rounds == 1:
            raise RuntimeError("database down")
        fired = min(limit, self.due)
        self.due -= fired
        return fired


async def test_the_timer_loop_outlives_a_failed_round():
    timers = ScriptedTimers(due=3, fail_first=True)
    loop = SagaTimers(timers, interval=0.02)
    await loop.start()
    await _until(lambda: timers.rounds >= 3 and timers.due == 0)  # polled: a loaded machine
    await loop.stop()


async def test_the_timer_loop_drains_full_batches_without_waiting_for_the_interval():
    timers = ScriptedTimers(due=25)
    loop = SagaTimers(timers, interval=60, batch=10)
    await loop.start()
    await _until(lambda: timers.due == 0)
    await asyncio.sleep(0.05)  # a fourth round would come at once, not in a minute
    await loop.stop()
    assert (timers.rounds, timers.due) == (3, 0)  # 10, 10, then 5 and a wait of a minute


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_the_saga_group_hands_each_participant_event_to_its_saga_and_skips_the_rest():
    handled: list[tuple[object, Received]] = []

    class Recorder:
        async def handle(self, reply, received):
            handled.append((reply, received))

    specs = saga_consumers(Recorder())
    assert sorted((spec.topic, spec.group) for spec in specs) == [
        (inventory.TOPIC, "orders.saga"),
        (payments.TOPIC, "orders.saga"),
        (shipping.TOPIC, "orders.saga"),
    ]
    on_reply = specs[0].handler_factory()
    command = Envelope(type=inventory.ReserveStock.type, key="o-1", payload={})
    reply = command.caused(inventory.StockReserved.type, "o-1", {"order_id": "o-1"})
    await on_reply(reply)
    await on_reply(Envelope(type="inventory.SomethingElse", key="o-1", payload={}))
    assert handled == [
        (
            inventory.StockReserved("o-1"),
            Received(str(reply.id), reply.type, "inventory", str(command.id), str(command.id)),
        )
    ]


# --- the saga matrix: for every step, a failure, a timeout and a redelivered reply there -----

COMPENSATION_OF = {
    Step.RESERVE_STOCK: inventory.ReleaseStock.type,
    Step.CAPTURE_PAYMENT: payments.RefundPayment.type,
    Step.CREATE_SHIPMENT: shipping.CancelShipment.type,
}
FAILURE_OF = {
    Step.RESERVE_STOCK: FailureReason.OUT_OF_STOCK,
    Step.CAPTURE_PAYMENT: FailureReason.PAYMENT_DECLINED,
    Step.CREATE_SHIPMENT: FailureReason.SHIPPING_FAILED,
}
TIMEOUT_OF = {
    Step.RESERVE_STOCK: FailureReason.STOCK_TIMEOUT,
    Step.CAPTURE_PAYMENT: FailureReason.PAYMENT_TIMEOUT,
    Step.CREATE_SHIPMENT: FailureReason.SHIPPING_TIMEOUT,
}


def answer(envelope: Envelope, behaviour: dict[Step, str]):
    """A participant's answer to a command: `ok`, `fail` or `hang` per step; compensations
    are always acknowledged."""
    payload = envelope.payload
    order_id = payload["order_id"]
    replies = {
        inventory.ReserveStock.type: (
            Step.RESERVE_STOCK,
            inventory.StockReserved(order_id),
            inventory.StockReservationFailed(order_id, ("tee-m",)),
        ),
        payments.CapturePayment.type: (
            Step.CAPTURE_PAYMENT,
            payments.PaymentCaptured(order_id, "pay-1", payload.get("amount_cents", 0), "EUR"),
            payments.PaymentFailed(order_id, "card_declined"),
        ),
        shipping.CreateShipment.type: (
            Step.CREATE_SHIPMENT,
            shipping.ShipmentCreated(order_id, "ship-1"),
            shipping.ShipmentFailed(order_id, "undeliverable_address"),
        ),
    }
    if envelope.type in replies:
        step, ok, failed = replies[envelope.type]
        return {"ok": ok, "fail": failed, "hang": None}[behaviour.get(step, "ok")]
    return {
        inventory.ReleaseStock.type: inventory.StockReleased(order_id),
        payments.RefundPayment.type: payments.PaymentRefunded(order_id, "pay-1", 7000, "EUR"),
        shipping.CancelShipment.type: shipping.ShipmentCancelled(order_id, "ship-1"),
    }[envelope.type]


async def drive(world: World, order_id: str, behaviour: dict[Step, str], *, twice=None):
    """Answer every command sent, the answer of step `twice` delivered twice; fire the timer
    when nothing is left to answer; until the saga settles."""
    answered = 0
    for _ in range(50):
        sent = world.messages.sent[answered:]
        answered = len(world.messages.sent)
        commands = [envelope for topic, envelope in sent if topic.endswith(".commands")]
        if not commands:
            if world.sagas.rows[order_id].saga.settled:
                return
            world.clock.advance(seconds=10)
            await world.orchestrator.fire_due()
            continue
        for envelope in commands:
            reply = answer(envelope, behaviour)
            if reply is None:
                continue
            copies = 2 if twice is not None and envelope.type == twice else 1
            for _ in range(copies):
                await world.reply(reply)
    raise AssertionError("the saga did not settle")


STEP_COMMANDS = {
    Step.RESERVE_STOCK: inventory.ReserveStock.type,
    Step.CAPTURE_PAYMENT: payments.CapturePayment.type,
    Step.CREATE_SHIPMENT: shipping.CreateShipment.type,
}


@pytest.mark.parametrize("k", range(3))
@pytest.mark.parametrize("what", ["fail", "hang"])
async def test_a_failure_or_timeout_at_step_k_compensates_the_steps_before_once_last_first(
    world, k, what
):
    steps = list(Step)
    order_id = await world.place()
    await drive(world, order_id, {steps[k]: what})
    done = steps[:k]
    compensations = [c for c in world.commands() if c in COMPENSATION_OF.values()]
    assert compensations == [COMPENSATION_OF[step] for step in reversed(done)]
    assert world.commands()[: k + 1] == [STEP_COMMANDS[step] for step in steps[: k + 1]]
    order = await world.order(order_id)
    reason = (FAILURE_OF if what == "fail" else TIMEOUT_OF)[steps[k]]
    assert (order.status, order.reason) == (OrderStatus.FAILED, reason)
    assert world.sent(public.TOPIC).count(public.OrderFailed.type) == 1
    assert not order.stock_held and not order.money_held


@pytest.mark.parametrize("k", range(3))
async def test_a_redelivered_reply_at_step_k_sends_every_command_once_and_confirms(world, k):
    order_id = await world.place()
    await drive(world, order_id, {}, twice=STEP_COMMANDS[list(Step)[k]])
    assert world.commands() == list(STEP_COMMANDS.values())
    order = await world.order(order_id)
    assert order.status is OrderStatus.CONFIRMED
    assert world.sent(public.TOPIC).count(public.OrderConfirmed.type) == 1
    duplicates = [e for e in world.timeline.entries if e.outcome == "duplicate"]
    assert len(duplicates) == 1
