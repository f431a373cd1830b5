"""In-memory fakes of the payments and shipping ports (their stores, events and inbox), for unit
tests of their services. The contract suites (`tests/contract/payments/test_stores.py`,
`tests/contract/shipping/test_stores.py`) run against these and the SQL adapters, so a fake
cannot drift from what the real ones do.

A write waits on its transaction handle until the transaction commits; reads inside the
transaction see its own writes, as a database's do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from townhall.payments.domain import Payment
from townhall.payments.ports import Received as PaymentReceived
from townhall.payments.ports import Reply as PaymentReply
from townhall.shipping.domain import Shipment, ShipmentStatus
from townhall.shipping.ports import Event as ShippingEvent
from townhall.shipping.ports import Received as ShippingReceived


class Handle:
    """The opaque transaction: the writes waiting for its commit, and what they will write."""

    def __init__(self) -> None:
        self.writes: list[Callable[[], None]] = []
        self.staged: dict[tuple[str, str], Any] = {}

    def stage(self, table: str, key: str, value: Any, write: Callable[[], None]) -> None:
        self.staged[(table, key)] = value
        self.writes.append(write)


class MemoryTransactions:
    """`Transactions` in memory. `commits` counts the transactions that committed."""

    def __init__(self) -> None:
        self.commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Handle]:
        handle = Handle()
        yield handle  # an exception leaves the writes unapplied: rolled back
        for write in handle.writes:
            write()
        self.commits += 1

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Handle]:
        yield Handle()


class _Rows:
    """One table keyed by order id."""

    table = ""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}

    def _get(self, conn: Handle, order_id: str) -> Any:
        if (self.table, order_id) in conn.staged:
            return conn.staged[(self.table, order_id)]
        return self.rows.get(order_id)

    def _add(self, conn: Handle, order_id: str, row: Any) -> bool:
        if self._get(conn, order_id) is not None:
            return False
        conn.stage(self.table, order_id, row, lambda: self.rows.__setitem__(order_id, row))
        return True

    def _update(self, conn: Handle, order_id: str, row: Any) -> None:
        if self._get(conn, order_id) is None:
            return
        conn.stage(self.table, order_id, row, lambda: self.rows.__setitem__(order_id, row))


class MemoryPayments(_Rows):
    table = "payments"

    async def get(self, conn: Handle, order_id: str) -> Payment | None:
        found: Payment | None = self._get(conn, order_id)
        return found

    async def add(self, conn: Handle, payment: Payment) -> bool:
        return self._add(conn, payment.order_id, payment)

    async def update(self, conn: Handle, payment: Payment) -> None:
        self._update(conn, payment.order_id, payment)


class MemoryShipments(_Rows):
    table = "shipments"

    async def get(self, conn: Handle, order_id: str) -> Shipment | None:
        found: Shipment | None = self._get(conn, order_id)
        return found

    async def add(self, conn: Handle, shipment: Shipment) -> bool:
        return self._add(conn, shipment.order_id, shipment)

    async def update(self, conn: Handle, shipment: Shipment) -> None:
        self._update(conn, shipment.order_id, shipment)

    async def mark_dispatched(self, conn: Handle, order_id: str, tracking: str) -> bool:
        stored: Shipment | None = self._get(conn, order_id)
        if stored is None or stored.status is not ShipmentStatus.CREATED or stored.tracking:
            return False
        self._update(conn, order_id, replace(stored, tracking=tracking))
        return True


@dataclass
class MemoryEvents:
    """The outbox: what was published, with the message that caused it, in commit order."""

    published: list[tuple[Any, Any]] = field(default_factory=list)

    async def publish(self, conn: Handle, event: Any, cause: Any) -> None:
        conn.writes.append(lambda: self.published.append((event, cause)))

    @property
    def events(self) -> list[Any]:
        return [event for event, _ in self.published]


class PaymentEventsFake(MemoryEvents):
    async def publish(self, conn: Handle, event: PaymentReply, cause: PaymentReceived) -> None:
        await super().publish(conn, event, cause)


class ShippingEventsFake(MemoryEvents):
    async def publish(self, conn: Handle, event: ShippingEvent, cause: ShippingReceived) -> None:
        await super().publish(conn, event, cause)


class MemoryHandledCommands:
    def __init__(self) -> None:
        self.handled: set[str] = set()

    async def first_time(self, conn: Handle, message_id: str) -> bool:
        if message_id in self.handled or ("inbox", message_id) in conn.staged:
            return False
        conn.stage("inbox", message_id, True, lambda: self.handled.add(message_id))
        return True
