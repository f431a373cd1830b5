"""The orders module's runtime in choreography mode (issue 21), and `Sagas`, which places an
order in the configured mode and sends a cancel to the mode the order was placed in.

No coordinator: at placement the card goes to payments (`PaymentVault`) and `OrderPlaced` is
published; then the participants react to each other's events. The orders module records
each participant's fact on the order (once), in the saga timeline (in both modes,
`GET /orders/{id}/timeline` reads the same table) and, when `choreography.decide` says the
order ended, appends its end, publishes it and closes the order's row in `orders_sagas`.

Each input is one unit of work, like the orchestrator's: the order is appended at the version
read, so two handlers of one order at once never both write; the loser runs again against
the order the winner left (where a repeated fact is a `duplicate`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from townhall.orders import events as public
from townhall.orders.choreography import cancel_refusal, decide
from townhall.orders.domain import (
    Change,
    Order,
    OrderEvent,
    OrderStatus,
    PaymentFailed,
    Reply,
    SagaMode,
    evolve,
)
from townhall.orders.ports import (
    Choreographies,
    ConcurrentChange,
    OrderRepository,
    PaymentVault,
    SagaMessages,
    StoredOrderEvent,
    Timeline,
    TimelineEntry,
)
from townhall.orders.saga import Note, Outcome
from townhall.orders.service import (
    CANCEL_TYPE,
    MODULE,
    CancelRefused,
    NewOrder,
    Orchestrator,
    OrderNotFound,
    Received,
    _envelope,
    _placed_payload,
    ending_envelope,
    sent_entries,
)
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id_str
from townhall.platform.messaging import Envelope
from townhall.platform.observability import get_logger
from townhall.platform.transaction import Transaction, Transactions

log = get_logger("townhall.orders")

Also = Callable[[Transaction, Order], Awaitable[None]]


class Choreographer:
    """Places choreographed orders, records the participants' facts and ends the orders.
    `deadline`: how long an order may run before its row lists it as stuck."""

    def __init__(
        self,
        transactions: Transactions,
        orders: OrderRepository,
        rows: Choreographies,
        timeline: Timeline,
        messages: SagaMessages,
        vault: PaymentVault,
        clock: Clock,
        *,
        deadline: timedelta = timedelta(seconds=120),
        max_conflicts: int = 20,
    ) -> None:
        self._tx = transactions
        self._orders = orders
        self._rows = rows
        self._timeline = timeline
        self._messages = messages
        self._vault = vault
        self._clock = clock
        self._deadline = deadline
        self._max_conflicts = max_conflicts

    async def place(self, new: NewOrder, *, also: Also | None = None) -> Order:
        """Hand the card to payments, then record the order (`OrderPlaced`, published with
        `saga_mode: choreography`), its row and its first timeline entry in one unit of work.
        Raises `InvalidOrder` naming the field at fault; nothing is written."""
        placed, order = new.place(SagaMode.CHOREOGRAPHY, self._clock)
        order_id = str(order.id)
        # First, in payments' own transaction: the card is there before anyone hears of the
        # order. An order that then fails to commit leaves an unused vault row, never a charge.
        await self._vault.vault(order_id, new.payment_method, order.total_cents, order.currency)
        announced = _envelope(public.OrderPlaced.type, order_id, _placed_payload(placed), None)
        async with self._tx.transaction() as conn:
            await self._rows.add(conn, order_id, placed.at + self._deadline, placed.at)
            await self._timeline.record(conn, sent_entries(order_id, [announced], placed.at))
            await self._messages.send(conn, [(public.TOPIC, announced)])
            if also is not None:
                await also(conn, order)
            await self._orders.append(
                conn, None, [placed], correlation_id=order_id, causation_id=None
            )
        return order

    async def handle(self, reply: Reply, received: Received) -> Note | None:
        """Record a participant's fact on its order, and end the order when the facts say so.
        None when the order is not a choreographed one (nothing is written)."""
        # A read first: an orchestrated order's reply costs one primary-key read here, no
        # write transaction (on SQLite one takes the write lock) and no event-store load.
        async with self._tx.connect() as conn:
            if not await self._rows.exists(conn, reply.order_id):
                return None
        for _ in range(self._max_conflicts):
            try:
                async with self._tx.transaction() as conn:
                    return await self._record(conn, reply, received)
            except ConcurrentChange:
                continue
        raise ConcurrentChange(
            f"order {reply.order_id}: {self._max_conflicts} conflicting handlers"
        )

    async def cancel(self, order_id: uuid.UUID) -> Note:
        """The buyer asks to cancel: `APPLIED` (`OrderCancelRequested` is published; the order
        ends CANCELLED once every participant answered) or `DUPLICATE`. Raises
        `OrderNotFound`, or `CancelRefused` saying why (recorded in the timeline too)."""
        received = Received(new_id_str(), CANCEL_TYPE, MODULE, str(order_id))
        for _ in range(self._max_conflicts):
            try:
                async with self._tx.transaction() as conn:
                    note, refusal = await self._cancel(conn, order_id, received)
                break
            except ConcurrentChange:
                continue
        else:
            raise ConcurrentChange(f"order {order_id}: {self._max_conflicts} conflicting handlers")
        if refusal is not None:
            raise CancelRefused(f"the order cannot be cancelled: {refusal}")
        return note

    # -- the units of work ---------------------------------------------------------------------

    async def _record(self, conn: Transaction, reply: Reply, received: Received) -> Note | None:
        order = await self._orders.load(conn, uuid.UUID(reply.order_id))
        if order is None or order.saga_mode is not SagaMode.CHOREOGRAPHY:
            return None
        change = order.record(reply, self._clock)
        note = (
            Note.APPLIED
            if change.events
            else Note.LATE
            if order.status.is_terminal
            else Note.DUPLICATE
        )
        events = list(change.events)
        now = self._clock.now()
        current = _apply(order, events)
        outgoing: list[Envelope] = []
        end = None
        if events:
            end = decide(current, await self._decline_code(conn, current, reply))
        if end is not None:
            ending = _end(current, end, self._clock)
            events.extend(ending.events)
            current = _apply(current, list(ending.events))
            outgoing.append(ending_envelope(current, end, received.message_id))
        await self._timeline.record(
            conn,
            [
                _entry(reply.order_id, received, note.value, now),
                *sent_entries(reply.order_id, outgoing, now),
            ],
        )
        await self._messages.send(conn, [(public.TOPIC, envelope) for envelope in outgoing])
        if end is not None:
            await self._rows.end(conn, reply.order_id, end.status.value, now)
        if events:
            await self._orders.append(
                conn,
                order,
                events,
                correlation_id=reply.order_id,
                causation_id=received.message_id,
            )
        log.debug(
            "choreography fact recorded",
            order_id=reply.order_id,
            message_type=received.message_type,
            note=note.value,
            ended=None if end is None else end.status.value,
        )
        return note

    async def _decline_code(self, conn: Transaction, order: Order, reply: Reply) -> str | None:
        """The decline code of the order's `PaymentFailed` (from the reply, or its history)."""
        if not order.holds(PaymentFailed):
            return None
        code = getattr(reply, "decline_code", None)
        if isinstance(code, str):
            return code
        for stored in reversed(await self._orders.history(conn, order.id)):
            if isinstance(stored.event, PaymentFailed):
                return stored.event.decline_code
        return None

    async def _cancel(
        self, conn: Transaction, order_id: uuid.UUID, received: Received
    ) -> tuple[Note, str | None]:
        order = await self._orders.load(conn, order_id)
        if order is None:
            raise OrderNotFound(order_id)
        if order.saga_mode is not SagaMode.CHOREOGRAPHY:
            raise ValueError(f"order {order_id} runs in {order.saga_mode.value} mode")
        key = str(order_id)
        now = self._clock.now()
        refusal = cancel_refusal(order)
        if refusal is not None:
            entry = _entry(key, received, Note.REFUSED.value, now, detail=refusal)
            await self._timeline.record(conn, [entry])
            return Note.REFUSED, refusal
        change = order.request_cancel(self._clock)
        if not change.events:
            await self._timeline.record(conn, [_entry(key, received, Note.DUPLICATE.value, now)])
            return Note.DUPLICATE, None
        request = public.OrderCancelRequested(key, order.buyer_id)
        envelope = _envelope(request.type, key, request.to_payload(), received.message_id)
        await self._timeline.record(
            conn,
            [_entry(key, received, Note.APPLIED.value, now), *sent_entries(key, [envelope], now)],
        )
        await self._messages.send(conn, [(public.TOPIC, envelope)])
        await self._orders.append(
            conn, order, change.events, correlation_id=key, causation_id=received.message_id
        )
        return Note.APPLIED, None


class Sagas:
    """The saga of an order in either mode: a new order is placed in the configured `mode`
    (read at start); a cancel goes to the mode the order was placed in, so orders already
    running finish in the mode they started in."""

    def __init__(
        self, mode: SagaMode, orchestrator: Orchestrator, choreographer: Choreographer
    ) -> None:
        self.mode = mode
        self._orchestrator = orchestrator
        self._choreographer = choreographer

    async def place(self, new: NewOrder, *, also: Also | None = None) -> Order:
        if self.mode is SagaMode.CHOREOGRAPHY:
            return await self._choreographer.place(new, also=also)
        return await self._orchestrator.place(new, also=also)

    async def order(self, order_id: uuid.UUID) -> Order:
        return await self._orchestrator.order(order_id)

    async def history(self, order_id: uuid.UUID) -> list[StoredOrderEvent]:
        return await self._orchestrator.history(order_id)

    async def timeline(self, order_id: uuid.UUID) -> list[TimelineEntry]:
        """The order's saga timeline, in either mode."""
        return await self._orchestrator.timeline(order_id)

    async def cancel(self, order_id: uuid.UUID) -> Note:
        """`APPLIED` or `DUPLICATE`; raises `OrderNotFound` or `CancelRefused` (a 409)."""
        order = await self._orchestrator.order(order_id)
        if order.saga_mode is SagaMode.CHOREOGRAPHY:
            return await self._choreographer.cancel(order_id)
        return await self._orchestrator.cancel(order_id)


# --- helpers ----------------------------------------------------------------------------------


def _apply(order: Order, events: list[OrderEvent]) -> Order:
    for event in events:
        order = evolve(order, event)
    return order


def _end(order: Order, end: Outcome, clock: Clock) -> Change:
    if end.status is OrderStatus.CONFIRMED:
        return order.confirm(clock)
    if end.status is OrderStatus.CANCELLED:
        return order.cancel(clock)
    assert end.reason is not None
    return order.fail(end.reason, clock, end.decline_code)


def _entry(
    order_id: str, received: Received, outcome: str, at: datetime, *, detail: str | None = None
) -> TimelineEntry:
    return TimelineEntry(
        order_id=order_id,
        at=at,
        module=received.module,
        message_type=received.message_type,
        message_id=received.message_id,
        correlation_id=received.correlation_id,
        causation_id=received.causation_id,
        outcome=outcome,
        detail=detail or received.detail,
    )
