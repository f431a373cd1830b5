"""What the orchestrator needs from the world, as protocols: where orders are kept (as events),
where each saga's state and durable timer are kept, where its timeline is written, and where
its messages go out.

Every write takes the caller's `Transaction`: one use case commits the order's events, the
saga's row, its timeline entries and its outbox rows together, or none of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from townhall.orders.domain import Order, OrderEvent, OrderLine
from townhall.orders.saga import Saga
from townhall.platform.messaging import Envelope
from townhall.platform.transaction import Transaction


class ConcurrentChange(Exception):
    """Another handler changed the order or its saga since it was read; this write was refused
    and the caller's transaction must roll back. Read again and retry."""


# --- values the stores take and give ------------------------------------------------------


@dataclass(frozen=True)
class StoredSaga:
    """A saga as read, with the version a save of this reading must still find."""

    order_id: str
    saga: Saga
    version: int


@dataclass(frozen=True)
class TimelineEntry:
    """One message of an order's saga: an input the orchestrator handled (`outcome` is what the
    saga made of it, a `saga.Note`) or a message it sent (`outcome` is `sent`)."""

    order_id: str
    at: datetime
    module: str  # the module that sent the message: orders, inventory, payments, shipping
    message_type: str
    message_id: str
    correlation_id: str | None
    causation_id: str | None
    outcome: str
    detail: str | None = None  # a refusal's reason, a timer's step and attempt


@dataclass(frozen=True)
class StoredOrderEvent:
    """One event of an order's stream as the event store keeps it."""

    event: OrderEvent
    version: int
    recorded_at: datetime
    correlation_id: str | None
    causation_id: str | None


# --- stores ---------------------------------------------------------------------------------


class OrderRepository(Protocol):
    """Orders stored only as events (stream `order-<id>`), appended at an expected version."""

    async def load(self, conn: Transaction, order_id: uuid.UUID) -> Order | None:
        """The order now (from its latest snapshot and the events after it); None if there is
        no such order."""
        ...

    async def as_of(self, conn: Transaction, order_id: uuid.UUID, at: datetime) -> Order | None:
        """The order as it was at `at`, replayed from its events; None before it existed."""
        ...

    async def history(self, conn: Transaction, order_id: uuid.UUID) -> list[StoredOrderEvent]:
        """The order's events, oldest first; empty if there is no such order."""
        ...

    async def append(
        self,
        conn: Transaction,
        order: Order | None,
        events: Sequence[OrderEvent],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        """Append `events` to the stream of `order`, expecting it at `order.version` (a new
        stream when `order` is None: then the first event is `OrderPlaced`). Raises
        `ConcurrentChange`, writing nothing, when the stream has moved on."""
        ...


class SagaStore(Protocol):
    """The orchestrator's sagas, one per order, each with its durable timer: the deadline of
    what the saga waits for (`Saga.waiting`), stored with it and fired by any process."""

    async def add(self, conn: Transaction, order_id: str, saga: Saga, now: datetime) -> None:
        """Record a new saga at version 1."""
        ...

    async def get(self, conn: Transaction, order_id: str) -> StoredSaga | None: ...

    async def save(
        self, conn: Transaction, stored: StoredSaga, saga: Saga, now: datetime
    ) -> StoredSaga:
        """Replace `stored` by `saga` (its version + 1), with its deadline, if the saga is still
        at `stored.version`; raises `ConcurrentChange`, writing nothing, otherwise."""
        ...

    async def due(self, conn: Transaction, now: datetime, limit: int) -> list[str]:
        """The orders whose saga's deadline is at or before `now`, earliest first."""
        ...

    async def claim_due(self, conn: Transaction, order_id: str, now: datetime) -> StoredSaga | None:
        """The saga, if its deadline is still at or before `now` and no other process holds it;
        it is then held until `conn`'s transaction ends (PostgreSQL: `FOR UPDATE SKIP
        LOCKED`; SQLite has one writer). None otherwise."""
        ...


class Timeline(Protocol):
    """Every message of each order's saga, in the order the orchestrator handled them."""

    async def record(self, conn: Transaction, entries: Sequence[TimelineEntry]) -> None: ...

    async def of(self, conn: Transaction, order_id: str) -> list[TimelineEntry]:
        """The order's entries, in the order they were recorded."""
        ...


class SagaMessages(Protocol):
    """Where the orchestrator's commands and the orders module's events go: the transactional
    outbox, so they are published once the caller's transaction commits."""

    async def send(self, conn: Transaction, messages: Sequence[tuple[str, Envelope]]) -> None:
        """`(topic, envelope)` pairs, published in this order once `conn` commits."""
        ...


# --- placing orders over HTTP ---------------------------------------------------------------


@dataclass(frozen=True)
class KnownKey:
    """What a buyer's idempotency key stands for: the request it first came with (as a
    fingerprint) and the order that request placed."""

    fingerprint: str
    order_id: str


class IdempotencyKeys(Protocol):
    """One order per (buyer, key)."""

    async def find(self, conn: Transaction, buyer_id: str, key: str) -> KnownKey | None: ...

    async def remember(
        self, conn: Transaction, buyer_id: str, key: str, known: KnownKey, now: datetime
    ) -> None:
        """Raises `ConcurrentChange` when another request took the key first; the caller's
        transaction must then roll back."""
        ...


@dataclass(frozen=True)
class PricedBasket:
    lines: Sequence[OrderLine]
    currency: str


class Prices(Protocol):
    """The server's current prices of a basket (inventory's, through its facade). Raises
    `errors.Invalid` naming `items.N.sku` for an unknown sku."""

    async def price(self, lines: Sequence[tuple[str, int]]) -> PricedBasket: ...


# --- the read side (CQRS): read models and lists, never read by the write side --------------


@dataclass(frozen=True)
class OrderSummary:
    """One order as the `orders.summaries` read model keeps it."""

    order_id: str
    buyer_id: str
    status: str
    reason: str | None
    decline_code: str | None
    items: tuple[OrderLine, ...]
    total_cents: int
    currency: str
    created_at: datetime
    updated_at: datetime
    version: int


@dataclass(frozen=True)
class SummaryKey:
    """Where a buyer's list of orders (newest first) stands: the last order of a page."""

    created_at: datetime
    order_id: str


@dataclass(frozen=True)
class DailySales:
    """What the confirmed orders of one day sold of one product (`orders.sales`)."""

    day: date
    sku: str
    currency: str
    quantity: int
    revenue_cents: int
    orders: int


class SagaFilter(StrEnum):
    RUNNING = "running"  # not ended
    FAILED = "failed"  # ended FAILED
    STUCK = "stuck"  # waiting, and its deadline long passed or its command sent many times


@dataclass(frozen=True)
class SagaOverview:
    """A saga as an administrator sees it in a list."""

    order_id: str
    mode: str
    phase: str
    status: str | None
    deadline: datetime | None
    attempt: int | None
    created_at: datetime
    updated_at: datetime


class OrderSummaries(Protocol):
    async def of_buyer(
        self, conn: Transaction, buyer_id: str, after: SummaryKey | None, limit: int
    ) -> list[OrderSummary]:
        """The buyer's orders, newest first (by creation time, then id), after `after`."""
        ...


class SalesReport(Protocol):
    async def between(self, conn: Transaction, first: date, last: date) -> list[DailySales]:
        """Sales of the days `first` to `last` (both included), by day, sku and currency."""
        ...


class SagaOverviews(Protocol):
    async def sagas(
        self,
        conn: Transaction,
        which: SagaFilter,
        *,
        overdue_before: datetime,
        stuck_attempts: int,
        after: str | None,
        limit: int,
    ) -> list[SagaOverview]:
        """Sagas by order id, newest first, after the order id `after`. Stuck: waiting on a
        command (running, or compensating a late success after its end), and its deadline is
        before `overdue_before` or its attempt is at least `stuck_attempts`."""
        ...


# --- choreography ---------------------------------------------------------------------------


class Choreographies(Protocol):
    """A row per choreographed order in the saga table (`mode` choreography), so stuck and
    running orders are found in both modes: the deadline after which it is stuck, then its
    end."""

    async def add(
        self, conn: Transaction, order_id: str, deadline: datetime, now: datetime
    ) -> None: ...

    async def end(self, conn: Transaction, order_id: str, status: str, now: datetime) -> None:
        """The order ended (`status`): it waits for nothing any more."""
        ...

    async def exists(self, conn: Transaction, order_id: str) -> bool:
        """Whether the order is a choreographed one (one primary-key read)."""
        ...


class PaymentVault(Protocol):
    """Where a choreographed order's payment method goes at placement (payments' facade), so
    it never travels in a public event."""

    async def vault(
        self, order_id: str, payment_method: str, amount_cents: int, currency: str
    ) -> None: ...
