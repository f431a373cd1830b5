"""In-memory fakes of the orders ports, for unit tests of the orchestrator (milliseconds, no
database). Writes wait on the transaction handle until it commits, and a commit first checks
every expected version (then applies all, or raises `ConcurrentChange` and applies nothing),
as the SQL stores and the event store do. `tests/contract/orders/test_stores.py` runs one
suite against these and the real stores, so a fake cannot drift from what they do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from townhall.orders.domain import Order, OrderEvent, OrderLine, evolve, fold
from townhall.orders.ports import (
    ConcurrentChange,
    KnownKey,
    PricedBasket,
    StoredOrderEvent,
    StoredSaga,
    TimelineEntry,
)
from townhall.orders.saga import Saga
from townhall.platform.messaging import Envelope


class Handle:
    """The opaque transaction: the checks and writes waiting for its commit, and what to undo
    (the sagas it holds) when it ends either way."""

    def __init__(self) -> None:
        self.checks: list[Callable[[], None]] = []
        self.writes: list[Callable[[], None]] = []
        self.on_end: list[Callable[[], None]] = []


class MemoryTransactions:
    def __init__(self) -> None:
        self.commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Handle]:
        handle = Handle()
        try:
            yield handle  # an exception leaves the writes unapplied: rolled back
            for check in handle.checks:
                check()
            for write in handle.writes:
                write()
            self.commits += 1
        finally:
            for end in handle.on_end:
                end()

    connect = transaction


@dataclass
class _Stream:
    events: list[OrderEvent] = field(default_factory=list)
    stored: list[StoredOrderEvent] = field(default_factory=list)


class MemoryOrders:
    """Order streams in a dict, appended at an expected version on commit."""

    def __init__(self) -> None:
        self.streams: dict[uuid.UUID, _Stream] = {}

    async def load(self, conn: Handle, order_id: uuid.UUID) -> Order | None:
        stream = self.streams.get(order_id)
        return None if stream is None else fold(stream.events)

    async def as_of(self, conn: Handle, order_id: uuid.UUID, at: datetime) -> Order | None:
        stream = self.streams.get(order_id)
        return None if stream is None else fold(stream.events, until=at)

    async def history(self, conn: Handle, order_id: uuid.UUID) -> list[StoredOrderEvent]:
        stream = self.streams.get(order_id)
        return [] if stream is None else list(stream.stored)

    async def append(
        self,
        conn: Handle,
        order: Order | None,
        events: Sequence[OrderEvent],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        if not events:
            return
        after = order
        for event in events:
            after = evolve(after, event)
        assert after is not None
        order_id, expected = after.id, 0 if order is None else order.version

        def check() -> None:
            stream = self.streams.get(order_id)
            actual = 0 if stream is None else len(stream.events)
            if actual != expected:
                raise ConcurrentChange(f"order {order_id}: expected {expected}, at {actual}")

        def write() -> None:
            stream = self.streams.setdefault(order_id, _Stream())
            for event in events:
                stream.events.append(event)
                stream.stored.append(
                    StoredOrderEvent(
                        event,
                        len(stream.events),
                        datetime.now(UTC),
                        correlation_id,
                        causation_id,
                    )
                )

        conn.checks.append(check)
        conn.writes.append(write)


class MemorySagas:
    """Saga rows in a dict; `held` are the sagas claimed by a transaction still open."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredSaga] = {}
        self.held: set[str] = set()

    async def add(self, conn: Handle, order_id: str, saga: Saga, now: datetime) -> None:
        def check() -> None:
            if order_id in self.rows:
                raise ConcurrentChange(f"order {order_id} has a saga already")

        conn.checks.append(check)
        conn.writes.append(lambda: self.rows.__setitem__(order_id, StoredSaga(order_id, saga, 1)))

    async def get(self, conn: Handle, order_id: str) -> StoredSaga | None:
        row = self.rows.get(order_id)
        # Let another task run between this read and the writes based on it, as a database
        # round trip would: two handlers of one saga then really overlap.
        await asyncio.sleep(0)
        return row

    async def save(self, conn: Handle, stored: StoredSaga, saga: Saga, now: datetime) -> StoredSaga:
        new = StoredSaga(stored.order_id, saga, stored.version + 1)

        def check() -> None:
            current = self.rows.get(stored.order_id)
            if current is None or current.version != stored.version:
                raise ConcurrentChange(f"the saga of order {stored.order_id} moved on")

        conn.checks.append(check)
        conn.writes.append(lambda: self.rows.__setitem__(stored.order_id, new))
        return new

    def _is_due(self, order_id: str, now: datetime) -> bool:
        waiting = self.rows[order_id].saga.waiting
        return waiting is not None and waiting.deadline <= now

    async def due(self, conn: Handle, now: datetime, limit: int) -> list[str]:
        deadlines = {
            order_id: stored.saga.waiting.deadline
            for order_id, stored in self.rows.items()
            if stored.saga.waiting is not None and stored.saga.waiting.deadline <= now
        }
        return sorted(deadlines, key=deadlines.__getitem__)[:limit]

    async def claim_due(self, conn: Handle, order_id: str, now: datetime) -> StoredSaga | None:
        if order_id not in self.rows or order_id in self.held or not self._is_due(order_id, now):
            return None
        self.held.add(order_id)
        conn.on_end.append(lambda: self.held.discard(order_id))
        return self.rows[order_id]


class MemoryTimeline:
    def __init__(self) -> None:
        self.entries: list[TimelineEntry] = []

    async def record(self, conn: Handle, entries: Sequence[TimelineEntry]) -> None:
        conn.writes.append(lambda: self.entries.extend(entries))

    async def of(self, conn: Handle, order_id: str) -> list[TimelineEntry]:
        return [entry for entry in self.entries if entry.order_id == order_id]


class MemoryMessages:
    """The outbox: `sent` holds every committed `(topic, envelope)`, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope]] = []

    async def send(self, conn: Handle, messages: Sequence[tuple[str, Envelope]]) -> None:
        conn.writes.append(lambda: self.sent.extend(messages))


class MemoryIdempotencyKeys:
    """Idempotency keys in a dict, written on commit; a key taken meanwhile fails the commit."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], KnownKey] = {}
        self.refused = 0  # commits refused because the key was taken meanwhile

    async def find(self, conn: Handle, buyer_id: str, key: str) -> KnownKey | None:
        known = self.keys.get((buyer_id, key))
        await asyncio.sleep(0)  # a real store yields here: lets two requests interleave
        return known

    async def remember(
        self, conn: Handle, buyer_id: str, key: str, known: KnownKey, now: datetime
    ) -> None:
        def check() -> None:
            if (buyer_id, key) in self.keys:
                self.refused += 1
                raise ConcurrentChange(f"idempotency key {key!r} was taken meanwhile")

        def write() -> None:
            self.keys[buyer_id, key] = known

        conn.checks.append(check)
        conn.writes.append(write)


class FixedPrices:
    """Every sku at one price, in EUR."""

    def __init__(self, unit_price_cents: int = 1500) -> None:
        self.unit_price_cents = unit_price_cents

    async def price(self, lines: Sequence[tuple[str, int]]) -> PricedBasket:
        return PricedBasket(
            [OrderLine(sku, quantity, self.unit_price_cents) for sku, quantity in lines], "EUR"
        )


class MemoryChoreographies:
    """The choreographed orders' rows: order id -> (phase, status, deadline)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str | None, datetime | None]] = {}

    async def add(self, conn: Handle, order_id: str, deadline: datetime, now: datetime) -> None:
        conn.writes.append(lambda: self.rows.__setitem__(order_id, ("running", None, deadline)))

    async def exists(self, conn: Handle, order_id: str) -> bool:
        return order_id in self.rows

    async def end(self, conn: Handle, order_id: str, status: str, now: datetime) -> None:
        conn.writes.append(lambda: self.rows.__setitem__(order_id, ("finished", status, None)))


class MemoryVault:
    """Payments' facade as the orders module sees it: what was vaulted, by order id."""

    def __init__(self) -> None:
        self.vaulted: dict[str, tuple[str, int, str]] = {}

    async def vault(
        self, order_id: str, payment_method: str, amount_cents: int, currency: str
    ) -> None:
        self.vaulted[order_id] = (payment_method, amount_cents, currency)
