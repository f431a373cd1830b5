"""The orchestration saga end to end in one process, on SQLite + the in-process bus and on
PostgreSQL + RabbitMQ: the orchestrator's commands leave through the outbox, tiny scripted
participants (below) answer them on the bus as inventory, payments and shipping would, the
`orders.saga` group handles the answers and the timer loop fires the deadlines."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

import townhall.orders
from support.notifications import bus_url, eventually
from support.orders import ADDRESS, CARD, LINES
from support.services import create_database, database_name, drop_database, require
from townhall.inventory import events as inventory
from townhall.orders.adapters.eventstore import EventStoreOrders
from townhall.orders.adapters.outbox import OutboxSagaMessages
from townhall.orders.adapters.sql import SqlSagaStore, SqlTimeline
from townhall.orders.consumers import SagaTimers, saga_consumers
from townhall.orders.domain import Address, FailureReason, OrderStatus
from townhall.orders.saga import Note, Timeouts
from townhall.orders.service import NewOrder, Orchestrator
from townhall.payments import events as payments
from townhall.platform.clock import SystemClock
from townhall.platform.db import Database
from townhall.platform.eventstore import SqlEventStore
from townhall.platform.eventstore import connect as connect_eventstore
from townhall.platform.messaging import Envelope, MessageBus
from townhall.platform.messaging import connect as connect_bus
from townhall.platform.migrations import migrate
from townhall.platform.outbox import OutboxRelay
from townhall.shipping import events as shipping

pytestmark = pytest.mark.timeout(90)

MIGRATIONS = Path(townhall.orders.__file__).parent / "migrations"
STACKS = {"sqlite+memory": ("sqlite", "memory"), "postgresql+rabbitmq": ("postgresql", "rabbitmq")}
DECLINED = "4000000000009995"  # insufficient funds, as the payments simulator
SILENT = "4000000000000000"  # a card whose capture is never answered
HELD = "4000000000000001"  # a card whose capture is answered once the test lets it
TIMEOUTS = Timeouts(
    reserve_stock=timedelta(seconds=5),
    capture_payment=timedelta(seconds=1),
    create_shipment=timedelta(seconds=5),
    compensation=timedelta(seconds=5),
)


@dataclass
class Participants:
    """Inventory, payments and shipping reduced to what the saga sees of them: each handles
    its commands idempotently by order id and answers on its events topic, the answer caused
    by the command. `copies`: how many times each answer is published (redeliveries)."""

    bus: MessageBus
    out_of_stock: set[str] = field(default_factory=set)
    undeliverable: set[str] = field(default_factory=set)  # countries
    copies: int = 1
    reserved: dict[str, tuple[inventory.StockLine, ...]] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    captured: dict[str, int] = field(default_factory=dict)
    refunded: list[str] = field(default_factory=list)
    shipments: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    captures_released: asyncio.Event = field(default_factory=asyncio.Event)

    async def answer(self, topic: str, command: Envelope, reply) -> None:
        for _ in range(self.copies):
            await self.bus.publish(
                topic, command.caused(reply.type, command.key, reply.to_payload())
            )

    async def inventory(self, envelope: Envelope) -> None:
        self.commands.append(envelope.type)
        if envelope.type == inventory.ReserveStock.type:
            reserve = inventory.ReserveStock.from_payload(envelope.payload)
            short = tuple(line.sku for line in reserve.lines if line.sku in self.out_of_stock)
            if short:
                reply = inventory.StockReservationFailed(reserve.order_id, short)
            else:
                self.reserved[reserve.order_id] = reserve.lines
                reply = inventory.StockReserved(reserve.order_id)
        else:
            release = inventory.ReleaseStock.from_payload(envelope.payload)
            if self.reserved.pop(release.order_id, None) is not None:
                self.released.append(release.order_id)
            reply = inventory.StockReleased(release.order_id)
        await self.answer(inventory.TOPIC, envelope, reply)

    async def payments(self, envelope: Envelope) -> None:
        self.commands.append(envelope.type)
        if envelope.type == payments.CapturePayment.type:
            capture = payments.CapturePayment.from_payload(envelope.payload)
            if capture.payment_method == SILENT:
                return
            if capture.payment_method == HELD:
                await self.captures_released.wait()
            if capture.payment_method == DECLINED:
                reply = payments.PaymentFailed(capture.order_id, "insufficient_funds")
            else:
                self.captured[capture.order_id] = capture.amount_cents
                reply = payments.PaymentCaptured(
                    capture.order_id,
                    f"pay-{capture.order_id}",
                    capture.amount_cents,
                    capture.currency,
                )
        else:
            refund = payments.RefundPayment.from_payload(envelope.payload)
            if self.captured.pop(refund.order_id, None) is not None:
                self.refunded.append(refund.order_id)
            reply = payments.PaymentRefunded(
                refund.order_id, refund.payment_id, refund.amount_cents, refund.currency
            )
        await self.answer(payments.TOPIC, envelope, reply)

    async def shipping(self, envelope: Envelope) -> None:
        self.commands.append(envelope.type)
        create = shipping.CreateShipment.from_payload(envelope.payload)
        if create.address.country in self.undeliverable:
            reply: shipping.ShipmentFailed | shipping.ShipmentCreated = shipping.ShipmentFailed(
                create.order_id, "undeliverable_address"
            )
        else:
            self.shipments.setdefault(create.order_id, f"ship-{create.order_id}")
            reply = shipping.ShipmentCreated(create.order_id, self.shipments[create.order_id])
        await self.answer(shipping.TOPIC, envelope, reply)


def orchestrator_on(database: Database, eventstore: SqlEventStore) -> Orchestrator:
    return Orchestrator(
        database,
        EventStoreOrders(eventstore, snapshot_every=4),
        SqlSagaStore(),
        SqlTimeline(),
        OutboxSagaMessages(),
        SystemClock(),
        timeouts=TIMEOUTS,
    )


@dataclass
class Running:
    orchestrator: Orchestrator
    participants: Participants
    timers: SagaTimers
    database: Database
    eventstore: SqlEventStore

    async def place(self, card: str = CARD, address: Address = ADDRESS) -> uuid.UUID:
        order = await self.orchestrator.place(NewOrder("buyer-1", LINES, "EUR", address, card))
        return order.id

    async def ended(self, order_id: uuid.UUID, *, within: float = 20.0):
        """The order once it is final and its saga has nothing left to send or wait for."""

        async def settled():
            stored = await self.orchestrator.saga(order_id)
            if stored is None or not stored.saga.settled:
                return None
            return await self.orchestrator.order(order_id)

        return await eventually(settled, within=within)


@pytest.fixture(params=list(STACKS))
async def saga(request, tmp_path) -> AsyncIterator[Running]:
    database_kind, bus_kind = STACKS[request.param]
    name = None
    if bus_kind == "rabbitmq":
        require("RabbitMQ", "127.0.0.1", 5672)
    if database_kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
    else:
        name = database_name("o")
        url = await create_database(name)
    database = Database(url)
    await migrate(database, [MIGRATIONS])
    eventstore = await connect_eventstore(database)
    bus = await connect_bus(bus_url(bus_kind, "o"))
    orchestrator = orchestrator_on(database, eventstore)
    participants = Participants(bus)
    subscriptions = [
        await bus.subscribe(spec.topic, spec.group, spec.handler_factory(), max_attempts=5)
        for spec in saga_consumers(orchestrator)
    ]
    for topic, handler in (
        (inventory.COMMAND_TOPIC, participants.inventory),
        (payments.COMMAND_TOPIC, participants.payments),
        (shipping.COMMAND_TOPIC, participants.shipping),
    ):
        subscriptions.append(await bus.subscribe(topic, f"test.{topic}", handler))
    relay = OutboxRelay(database, bus, poll_interval=0.2)
    timers = SagaTimers(orchestrator, interval=0.1)
    await relay.start()
    await timers.start()
    try:
        running = Running(orchestrator, participants, timers, database, eventstore)
        yield running
    finally:
        participants.captures_released.set()  # no handler left waiting on the test
        await running.timers.stop()
        await relay.stop()
        for subscription in subscriptions:
            await subscription.stop()
        await bus.close()
        await eventstore.close()
        await database.dispose()
        if name is not None:
            await drop_database(name)


def flow(timeline) -> list[tuple[str, str]]:
    return [(entry.message_type, entry.outcome) for entry in timeline]


async def test_a_saga_that_succeeds_confirms_the_order(saga):
    order_id = await saga.place()
    order = await saga.ended(order_id)
    assert order.status is OrderStatus.CONFIRMED
    key = str(order_id)
    assert saga.participants.captured == {key: 7000}
    assert key in saga.participants.reserved and key in saga.participants.shipments
    timeline = await saga.orchestrator.timeline(order_id)
    assert flow(timeline) == [
        ("orders.OrderPlaced", "sent"),
        ("inventory.ReserveStock", "sent"),
        ("inventory.StockReserved", "applied"),
        ("payments.CapturePayment", "sent"),
        ("payments.PaymentCaptured", "applied"),
        ("shipping.CreateShipment", "sent"),
        ("shipping.ShipmentCreated", "applied"),
        ("orders.OrderConfirmed", "sent"),
    ]
    # Causal order: each reply was caused by the command before it, each command by its input.
    for cause, effect in itertools.pairwise(timeline):
        assert effect.causation_id == cause.message_id
        assert effect.correlation_id == key
    history = await saga.orchestrator.history(order_id)
    assert [stored.event.type for stored in history] == [
        "OrderPlaced",
        "StockReserved",
        "PaymentCaptured",
        "ShipmentCreated",
        "OrderConfirmed",
    ]


async def test_every_reply_delivered_twice_still_moves_the_saga_once(saga):
    saga.participants.copies = 2
    order_id = await saga.place()
    order = await saga.ended(order_id)
    assert order.status is OrderStatus.CONFIRMED and order.version == 5

    async def replies() -> list[str] | None:
        timeline = await saga.orchestrator.timeline(order_id)
        outcomes = [entry.outcome for entry in timeline if entry.module != "orders"]
        return outcomes if len(outcomes) >= 6 else None

    assert sorted(await eventually(replies)) == ["applied"] * 3 + ["duplicate"] * 3
    assert saga.participants.commands == [
        inventory.ReserveStock.type,
        payments.CapturePayment.type,
        shipping.CreateShipment.type,
    ]
    assert saga.participants.captured == {str(order_id): 7000}


async def test_an_order_out_of_stock_fails_without_a_payment(saga):
    saga.participants.out_of_stock.add(LINES[1].sku)
    order_id = await saga.place()
    order = await saga.ended(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.OUT_OF_STOCK)
    assert saga.participants.commands == [inventory.ReserveStock.type]
    assert saga.participants.captured == {} and saga.participants.reserved == {}


async def test_a_declined_payment_releases_the_stock(saga):
    order_id = await saga.place(card=DECLINED)
    order = await saga.ended(order_id)
    assert (order.status, order.reason, order.decline_code) == (
        OrderStatus.FAILED,
        FailureReason.PAYMENT_DECLINED,
        "insufficient_funds",
    )
    assert saga.participants.released == [str(order_id)]
    assert saga.participants.reserved == {} and saga.participants.captured == {}


async def test_a_payment_that_never_answers_is_compensated_after_the_step_timeout(saga):
    order_id = await saga.place(card=SILENT)
    order = await saga.ended(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)
    assert saga.participants.released == [str(order_id)]
    assert order.updated_at - order.created_at >= TIMEOUTS.capture_payment
    timeline = await saga.orchestrator.timeline(order_id)
    (capture,) = [e for e in timeline if e.message_type == payments.CapturePayment.type]
    (deadline,) = [e for e in timeline if e.message_type == "orders.DeadlinePassed"]
    assert (deadline.outcome, deadline.causation_id) == ("applied", capture.message_id)


async def test_a_shipping_failure_refunds_the_payment_and_releases_the_stock(saga):
    saga.participants.undeliverable.add("AQ")
    order_id = await saga.place(address=Address("Ada", "1 Ice Shelf", "McMurdo", "0", "AQ"))
    order = await saga.ended(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.SHIPPING_FAILED)
    key = str(order_id)
    assert (saga.participants.refunded, saga.participants.released) == ([key], [key])
    assert saga.participants.commands[-2:] == [
        payments.RefundPayment.type,
        inventory.ReleaseStock.type,
    ]


async def test_a_deadline_armed_before_a_restart_fires_after_it(saga):
    await saga.timers.stop()  # the process that armed the deadline goes away
    order_id = await saga.place(card=SILENT)

    async def capture_asked() -> bool:
        return payments.CapturePayment.type in saga.participants.commands

    await eventually(capture_asked)
    await asyncio.sleep(TIMEOUTS.capture_payment.total_seconds())
    stored = await saga.orchestrator.saga(order_id)
    assert stored is not None and not stored.saga.settled  # past its deadline, not fired

    # Another process: a new orchestrator and timer loop on the same database.
    saga.orchestrator = orchestrator_on(saga.database, saga.eventstore)
    saga.timers = SagaTimers(saga.orchestrator, interval=0.1)
    await saga.timers.start()
    order = await saga.ended(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)
    assert saga.participants.released == [str(order_id)]


async def commanded(saga: Running, command_type: str) -> None:
    async def asked() -> bool:
        return command_type in saga.participants.commands

    await eventually(asked)


async def test_a_capture_answered_after_its_timeout_is_refunded_and_the_order_stays_failed(saga):
    order_id = await saga.place(card=HELD)
    order = await saga.ended(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)
    saga.participants.captures_released.set()  # the provider answers, late

    async def refunded() -> bool:
        return saga.participants.refunded == [str(order_id)]

    await eventually(refunded)
    await saga.ended(order_id)
    timeline = flow(await saga.orchestrator.timeline(order_id))
    late = timeline.index(("payments.PaymentCaptured", "late_success"))
    assert timeline[late + 1] == ("payments.RefundPayment", "sent")
    assert timeline[-1] == ("payments.PaymentRefunded", "applied")
    history = [stored.event.type for stored in await saga.orchestrator.history(order_id)]
    assert history.count("OrderFailed") == 1 and history[-1] == "OrderFailed"
    order = await saga.orchestrator.order(order_id)
    assert (order.status, order.reason) == (OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)


async def test_a_cancel_while_the_payment_is_captured_refunds_releases_and_cancels(saga):
    order_id = await saga.place(card=HELD)
    await commanded(saga, payments.CapturePayment.type)
    assert await saga.orchestrator.cancel(order_id) is Note.APPLIED
    saga.participants.captures_released.set()
    order = await saga.ended(order_id)
    assert order.status is OrderStatus.CANCELLED
    key = str(order_id)
    assert (saga.participants.refunded, saga.participants.released) == ([key], [key])
    assert shipping.CreateShipment.type not in saga.participants.commands


async def test_two_processes_firing_deadlines_at_once_fire_each_once(saga):
    await saga.timers.stop()
    order_ids = [await saga.place(card=SILENT) for _ in range(10)]

    async def all_asked() -> bool:
        return saga.participants.commands.count(payments.CapturePayment.type) == 10

    await eventually(all_asked)
    await asyncio.sleep(TIMEOUTS.capture_payment.total_seconds())
    first, second = (orchestrator_on(saga.database, saga.eventstore) for _ in range(2))
    fired = await asyncio.gather(first.fire_due(), second.fire_due())
    assert sum(fired) == 10
    for order_id in order_ids:
        order = await saga.ended(order_id)
        assert order.reason is FailureReason.PAYMENT_TIMEOUT
        timeline = flow(await saga.orchestrator.timeline(order_id))
        assert timeline.count(("orders.DeadlinePassed", "applied")) == 1
    assert sorted(saga.participants.released) == sorted(str(o) for o in order_ids)
