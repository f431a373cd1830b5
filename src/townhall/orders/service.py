"""The orchestrator: runs each order's saga (`saga.py`) on its ports. Each input (a
participant's reply, a deadline passing, the buyer's cancel) is one unit of work: the saga is
read, `saga.handle` decides, and the order's new events, the saga's new state and deadline,
the timeline entries and the commands to send commit together.

Two copies of one reply handled at once move the saga once: a saga is saved only at the
version it was read at (and the order's events appended at the order's), so the second
handler's transaction rolls back and it handles the reply again, against the saga the first
one left, where it is a duplicate. Every input is saved, even one that changes nothing, so
an input is always judged against the latest saga.

Every message of the saga carries the order id as its correlation id; a command's causation
id is the id of the input that made the saga send it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from townhall.inventory import events as inventory
from townhall.orders import events as public
from townhall.orders.domain import (
    Address,
    Change,
    Order,
    OrderEvent,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    Reply,
    SagaMode,
    evolve,
    fold,
    place,
)
from townhall.orders.ports import (
    ConcurrentChange,
    IdempotencyKeys,
    KnownKey,
    OrderRepository,
    Prices,
    SagaMessages,
    SagaStore,
    StoredOrderEvent,
    StoredSaga,
    Timeline,
    TimelineEntry,
)
from townhall.orders.saga import (
    CancelOrder,
    Command,
    DeadlinePassed,
    Handled,
    Input,
    Note,
    Outcome,
    Step,
    Timeouts,
    handle,
    start,
)
from townhall.payments import events as payments
from townhall.platform import errors
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id, new_id_str
from townhall.platform.messaging import Envelope
from townhall.platform.observability import get_logger
from townhall.platform.transaction import Transaction, Transactions
from townhall.shipping import events as shipping

log = get_logger("townhall.orders")

MODULE = "orders"
SENT = "sent"  # the timeline's outcome of a message the orchestrator sent
DEADLINE_TYPE = "orders.DeadlinePassed"
CANCEL_TYPE = "orders.CancelOrder"

COMMAND_TOPICS: dict[type[Command], str] = {
    inventory.ReserveStock: inventory.COMMAND_TOPIC,
    inventory.ReleaseStock: inventory.COMMAND_TOPIC,
    payments.CapturePayment: payments.COMMAND_TOPIC,
    payments.RefundPayment: payments.COMMAND_TOPIC,
    shipping.CreateShipment: shipping.COMMAND_TOPIC,
    shipping.CancelShipment: shipping.COMMAND_TOPIC,
}


# The command a saga waits on, by (step, compensating): what a deadline passing was caused by.
WAITED_ON: dict[tuple[Step, bool], str] = {
    (Step.RESERVE_STOCK, False): inventory.ReserveStock.type,
    (Step.RESERVE_STOCK, True): inventory.ReleaseStock.type,
    (Step.CAPTURE_PAYMENT, False): payments.CapturePayment.type,
    (Step.CAPTURE_PAYMENT, True): payments.RefundPayment.type,
    (Step.CREATE_SHIPMENT, False): shipping.CreateShipment.type,
    (Step.CREATE_SHIPMENT, True): shipping.CancelShipment.type,
}


class OrderNotFound(errors.NotFound):
    def __init__(self, order_id: object) -> None:
        super().__init__(f"no order {order_id}")


class CancelRefused(errors.Conflict):
    """The saga refuses the cancel: the shipment is under way or exists, or the order failed."""

    code = "order-not-cancellable"


@dataclass(frozen=True)
class NewOrder:
    """What a buyer orders, at the server's prices, and how they pay."""

    buyer_id: str
    lines: Sequence[OrderLine]
    currency: str
    shipping_address: Address
    payment_method: str

    def place(self, mode: SagaMode, clock: Clock) -> tuple[OrderPlaced, Order]:
        """The order placed in `mode`: its first event and the order it makes. Raises
        `InvalidOrder` naming the field at fault."""
        placed = place(
            buyer_id=self.buyer_id,
            lines=self.lines,
            currency=self.currency,
            shipping_address=self.shipping_address,
            saga_mode=mode,
            clock=clock,
        )
        order = fold([placed])
        assert order is not None
        return placed, order


@dataclass(frozen=True)
class Received:
    """Where an input came from: its envelope's id, type and sender, and its correlation and
    causation ids, for the timeline and for the causation of what it makes the saga send."""

    message_id: str
    message_type: str
    module: str
    correlation_id: str | None = None
    causation_id: str | None = None
    detail: str | None = None

    @classmethod
    def of(cls, envelope: Envelope) -> Received:
        return cls(
            message_id=str(envelope.id),
            message_type=envelope.type,
            module=envelope.type.split(".", 1)[0],
            correlation_id=envelope.headers.get("correlation_id"),
            causation_id=envelope.headers.get("causation_id"),
        )


class Orchestrator:
    """Places orders and runs their sagas. `max_conflicts`: how many times an input is tried
    again after another handler changed its saga first, before the error reaches the bus."""

    def __init__(
        self,
        transactions: Transactions,
        orders: OrderRepository,
        sagas: SagaStore,
        timeline: Timeline,
        messages: SagaMessages,
        clock: Clock,
        *,
        timeouts: Timeouts | None = None,
        max_conflicts: int = 20,
    ) -> None:
        self._tx = transactions
        self._orders = orders
        self._sagas = sagas
        self._timeline = timeline
        self._messages = messages
        self._clock = clock
        self._timeouts = timeouts or Timeouts()
        self._max_conflicts = max_conflicts

    # -- use cases -----------------------------------------------------------------------------

    async def place(
        self,
        new: NewOrder,
        *,
        also: Callable[[Transaction, Order], Awaitable[None]] | None = None,
    ) -> Order:
        """Record the order (`OrderPlaced`), start its saga and send its first command, in one
        unit of work (with `also`, the caller's own write of the new order, when given).
        Raises `InvalidOrder` naming the field at fault; nothing is written."""
        placed, order = new.place(SagaMode.ORCHESTRATION, self._clock)
        order_id = str(order.id)
        started = start(order, new.payment_method, self._clock, self._timeouts)
        announced = _envelope(public.OrderPlaced.type, order_id, _placed_payload(placed), None)
        cause = Received(str(announced.id), announced.type, MODULE, order_id)
        outgoing = [(public.TOPIC, announced), *self._commands(order_id, started, cause)]
        async with self._tx.transaction() as conn:
            await self._sagas.add(conn, order_id, started.saga, placed.at)
            await self._timeline.record(conn, self._entries(order_id, outgoing, placed.at))
            await self._messages.send(conn, outgoing)
            if also is not None:
                await also(conn, order)
            await self._orders.append(
                conn, None, [placed], correlation_id=order_id, causation_id=None
            )
        return order

    async def handle(self, reply: Reply, received: Received) -> Handled | None:
        """Run a participant's reply through the order's saga. None when the order has no saga
        here (an order of the other saga mode, or not ours): nothing is written."""
        return await self._run(reply.order_id, reply, received)

    async def cancel(self, order_id: uuid.UUID) -> Note:
        """The buyer asks to cancel: `APPLIED` (the saga winds down once the step in flight
        answers) or `DUPLICATE`. Raises `OrderNotFound`, or `CancelRefused` saying why (the
        refusal is in the timeline too)."""
        received = Received(new_id_str(), CANCEL_TYPE, MODULE, str(order_id))
        handled = await self._run(str(order_id), CancelOrder(), received)
        if handled is None:
            raise OrderNotFound(order_id)
        if handled.note is Note.REFUSED:
            raise CancelRefused(f"the order cannot be cancelled: {handled.refusal}")
        return handled.note

    async def fire_due(self, *, limit: int = 100) -> int:
        """Fire the timers whose deadline has passed (at most `limit`): how many fired. A saga
        another process is firing is skipped; one whose firing fails is logged and tried again
        next time, and does not hold back the others."""
        now = self._clock.now()
        async with self._tx.connect() as conn:
            due = await self._sagas.due(conn, now, limit)
        fired = 0
        for order_id in due:
            try:
                fired += await self._fire(order_id, now)
            except ConcurrentChange:
                continue  # a reply moved the saga meanwhile; its next deadline is its own
            except Exception:
                log.exception("firing a saga's deadline failed", order_id=order_id)
        return fired

    # -- reads ---------------------------------------------------------------------------------

    async def order(self, order_id: uuid.UUID, *, as_of: datetime | None = None) -> Order:
        async with self._tx.connect() as conn:
            if as_of is None:
                order = await self._orders.load(conn, order_id)
            else:
                order = await self._orders.as_of(conn, order_id, as_of)
        if order is None:
            raise OrderNotFound(order_id)
        return order

    async def history(self, order_id: uuid.UUID) -> list[StoredOrderEvent]:
        async with self._tx.connect() as conn:
            return await self._orders.history(conn, order_id)

    async def saga(self, order_id: uuid.UUID) -> StoredSaga | None:
        async with self._tx.connect() as conn:
            return await self._sagas.get(conn, str(order_id))

    async def timeline(self, order_id: uuid.UUID) -> list[TimelineEntry]:
        async with self._tx.connect() as conn:
            return await self._timeline.of(conn, str(order_id))

    # -- the unit of work ----------------------------------------------------------------------

    async def _run(self, order_id: str, message: Input, received: Received) -> Handled | None:
        for _ in range(self._max_conflicts):
            try:
                async with self._tx.transaction() as conn:
                    stored = await self._sagas.get(conn, order_id)
                    if stored is None:
                        log.debug(
                            "no saga for the order",
                            order_id=order_id,
                            message_type=received.message_type,
                        )
                        return None
                    return await self._apply(conn, stored, message, received)
            except ConcurrentChange:
                continue  # another handler moved the saga first: judge it again
        raise ConcurrentChange(f"order {order_id}: {self._max_conflicts} conflicting handlers")

    async def _fire(self, order_id: str, now: datetime) -> int:
        async with self._tx.transaction() as conn:
            stored = await self._sagas.claim_due(conn, order_id, now)
            if stored is None or stored.saga.waiting is None:
                return 0  # fired by another process, or answered meanwhile
            timer = stored.saga.waiting.timer
            what = "compensation of " if timer.compensating else ""
            # Caused by the command it waited on: the last one of its kind the saga sent.
            waited_on = WAITED_ON[timer.step, timer.compensating]
            entries = await self._timeline.of(conn, order_id)
            cause = next(
                (
                    e.message_id
                    for e in reversed(entries)
                    if (e.outcome, e.message_type) == (SENT, waited_on)
                ),
                None,
            )
            received = Received(
                new_id_str(),
                DEADLINE_TYPE,
                MODULE,
                order_id,
                causation_id=cause,
                detail=f"{what}{timer.step.value}, attempt {timer.attempt}",
            )
            await self._apply(conn, stored, timer, received)
            return 1

    async def _apply(
        self, conn: Transaction, stored: StoredSaga, message: Input, received: Received
    ) -> Handled:
        order_id = stored.order_id
        handled = handle(stored.saga, message, self._clock)
        now = self._clock.now()
        order = await self._orders.load(conn, uuid.UUID(order_id))
        if order is None:
            raise LookupError(f"the saga of order {order_id} has no order stream")
        facts = self._facts(order, message, handled)
        outgoing = self._commands(order_id, handled, received)
        if handled.finished is not None:
            outgoing.append((public.TOPIC, self._ending(order, handled, received)))
        detail = handled.refusal or received.detail
        entries = [
            TimelineEntry(
                order_id=order_id,
                at=now,
                module=received.module,
                message_type=received.message_type,
                message_id=received.message_id,
                correlation_id=received.correlation_id,
                causation_id=received.causation_id,
                outcome=handled.note.value,
                detail=detail,
            ),
            *self._entries(order_id, outgoing, now),
        ]
        # The saga first: a second copy of this input conflicts here, before anything else.
        await self._sagas.save(conn, stored, handled.saga, now)
        await self._timeline.record(conn, entries)
        await self._messages.send(conn, outgoing)
        if facts:
            # Last: on PostgreSQL an append holds the event store's position lock to commit.
            await self._orders.append(
                conn,
                order,
                facts,
                correlation_id=order_id,
                causation_id=received.message_id,
            )
        log.debug(
            "saga input handled",
            order_id=order_id,
            message_type=received.message_type,
            note=handled.note.value,
            sent=[envelope.type for _, envelope in outgoing],
        )
        return handled

    def _facts(self, order: Order, message: Input, handled: Handled) -> list[OrderEvent]:
        """What the order records of this input: a participant's fact (once; never refused),
        an accepted cancel request, and the saga's end when this input finished it."""
        events: list[OrderEvent] = []

        def apply(change: Change) -> None:
            nonlocal order
            for event in change.events:
                order = evolve(order, event)
                events.append(event)

        if isinstance(message, CancelOrder):
            if handled.note is Note.APPLIED:
                apply(order.request_cancel(self._clock))
        elif not isinstance(message, DeadlinePassed):
            apply(order.record(message, self._clock))
        outcome = handled.finished
        if outcome is not None:
            if outcome.status is OrderStatus.CONFIRMED:
                apply(order.confirm(self._clock))
            elif outcome.status is OrderStatus.CANCELLED:
                apply(order.cancel(self._clock))
            else:
                assert outcome.reason is not None
                apply(order.fail(outcome.reason, self._clock, outcome.decline_code))
        return events

    def _commands(
        self, order_id: str, handled: Handled, cause: Received
    ) -> list[tuple[str, Envelope]]:
        return [
            (
                COMMAND_TOPICS[type(command)],
                _envelope(command.type, order_id, command.to_payload(), cause.message_id),
            )
            for command in handled.commands
        ]

    def _ending(self, order: Order, handled: Handled, cause: Received) -> Envelope:
        assert handled.finished is not None
        return ending_envelope(order, handled.finished, cause.message_id)

    def _entries(
        self, order_id: str, outgoing: Sequence[tuple[str, Envelope]], at: datetime
    ) -> list[TimelineEntry]:
        return sent_entries(order_id, [envelope for _, envelope in outgoing], at)


class KeyReused(errors.Invalid):
    """An idempotency key the buyer already used with another request."""


@dataclass(frozen=True)
class OrderRequest:
    """What a buyer asks for over HTTP: skus and quantities (the prices are the server's)."""

    items: Sequence[tuple[str, int]]
    shipping_address: Address
    payment_method: str


class OrderPlacer(Protocol):
    """Where the desk places an order and reads it back: the orchestrator, or `Sagas`, which
    places it in the configured saga mode."""

    async def place(
        self,
        new: NewOrder,
        *,
        also: Callable[[Transaction, Order], Awaitable[None]] | None = None,
    ) -> Order: ...

    async def order(self, order_id: uuid.UUID) -> Order: ...

    async def cancel(self, order_id: uuid.UUID) -> Note: ...


class OrderDesk:
    """Takes a buyer's order: prices it, and places it once per (buyer, idempotency key). The
    key and the order commit together; a second request with the key gets the first's order
    (also when the two race), one with the key and another body is refused."""

    def __init__(
        self,
        transactions: Transactions,
        orchestrator: OrderPlacer,
        prices: Prices,
        keys: IdempotencyKeys,
        clock: Clock,
    ) -> None:
        self._tx = transactions
        self._orchestrator = orchestrator
        self._prices = prices
        self._keys = keys
        self._clock = clock

    async def place(
        self, buyer_id: str, key: str, fingerprint: str, request: OrderRequest
    ) -> Order:
        known = await self._known(buyer_id, key, fingerprint)
        if known is not None:
            return known
        basket = await self._prices.price(request.items)
        new = NewOrder(
            buyer_id,
            basket.lines,
            basket.currency,
            request.shipping_address,
            request.payment_method,
        )

        async def remember(conn: Transaction, order: Order) -> None:
            entry = KnownKey(fingerprint, str(order.id))
            await self._keys.remember(conn, buyer_id, key, entry, self._clock.now())

        try:
            return await self._orchestrator.place(new, also=remember)
        except ConcurrentChange:
            raced = await self._known(buyer_id, key, fingerprint)
            if raced is None:
                raise
            return raced

    async def cancel(self, order: Order) -> Order:
        """The buyer's cancel of `order`, by the saga that runs it: accepted (the saga winds
        the order down to CANCELLED once the step in flight answers) or a repeat; refused with
        the reason otherwise (`CancelRefused`, `CannotCancel`). The order after the request."""
        # One entry point for every saga mode: the order's own mode decides who winds it down.
        await self._orchestrator.cancel(order.id)
        return await self._orchestrator.order(order.id)

    async def _known(self, buyer_id: str, key: str, fingerprint: str) -> Order | None:
        async with self._tx.connect() as conn:
            known = await self._keys.find(conn, buyer_id, key)
        if known is None:
            return None
        if known.fingerprint != fingerprint:
            raise KeyReused(
                "this Idempotency-Key was used with another request", field="Idempotency-Key"
            )
        return await self._orchestrator.order(uuid.UUID(known.order_id))


def ending_envelope(order: Order, outcome: Outcome, cause: str) -> Envelope:
    """The order's end as the module publishes it (`orders`), caused by message `cause`; the
    same in both saga modes."""
    key = str(order.id)
    ending: public.OrderConfirmed | public.OrderFailed | public.OrderCancelled
    if outcome.status is OrderStatus.CONFIRMED:
        ending = public.OrderConfirmed(key, order.buyer_id, order.total_cents, order.currency)
    elif outcome.status is OrderStatus.CANCELLED:
        ending = public.OrderCancelled(key, order.buyer_id)
    else:
        assert outcome.reason is not None
        ending = public.OrderFailed(key, order.buyer_id, outcome.reason.value, outcome.decline_code)
    return _envelope(ending.type, key, ending.to_payload(), cause)


def sent_entries(order_id: str, envelopes: Sequence[Envelope], at: datetime) -> list[TimelineEntry]:
    """The timeline entries of messages the orders module sends (outcome `sent`)."""
    return [
        TimelineEntry(
            order_id=order_id,
            at=at,
            module=MODULE,
            message_type=envelope.type,
            message_id=str(envelope.id),
            correlation_id=envelope.headers.get("correlation_id"),
            causation_id=envelope.headers.get("causation_id"),
            outcome=SENT,
        )
        for envelope in envelopes
    ]


def _envelope(message_type: str, order_id: str, payload: object, cause: str | None) -> Envelope:
    headers = {"correlation_id": order_id}
    if cause is not None:
        headers["causation_id"] = cause
    return Envelope(type=message_type, key=order_id, payload=payload, id=new_id(), headers=headers)


def _placed_payload(placed: OrderPlaced) -> dict[str, object]:
    address = placed.shipping_address
    return public.OrderPlaced(
        order_id=str(placed.order_id),
        buyer_id=placed.buyer_id,
        lines=tuple(
            public.PlacedLine(line.sku, line.quantity, line.unit_price_cents)
            for line in placed.lines
        ),
        total_cents=placed.total_cents,
        currency=placed.currency,
        shipping_address=public.ShippingAddress(
            address.name,
            address.line1,
            address.city,
            address.postal_code,
            address.country,
            address.line2,
        ),
        saga_mode=placed.saga_mode.value,
    ).to_payload()
