"""The read side of orders (CQRS): a buyer's orders and the sales per day (read models fed by
projections, eventually consistent), a saga's timeline in causal order, and the
administrators' lists of sagas. Nothing here decides anything on the write side.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from townhall.orders.ports import (
    DailySales,
    OrderSummaries,
    OrderSummary,
    SagaFilter,
    SagaOverview,
    SagaOverviews,
    SalesReport,
    SummaryKey,
    Timeline,
    TimelineEntry,
)
from townhall.platform.clock import Clock
from townhall.platform.transaction import Transactions

# A saga waiting on a command (running, or compensating a late success after its end) is
# stuck when no process fired its deadline for this long (timers look every second), or when
# that command was sent this many times (a compensation that is never acknowledged is sent
# again at each deadline, forever).
STUCK_OVERDUE = timedelta(minutes=1)
STUCK_ATTEMPTS = 3


def causal_order(entries: Sequence[TimelineEntry]) -> list[TimelineEntry]:
    """`entries` in the order recorded, except that an entry whose cause (the entry whose
    `message_id` is its `causation_id`) is recorded after it waits and comes right after its
    cause. With one writer per saga, as in orchestration, this is the order recorded."""
    ids = {entry.message_id for entry in entries}
    emitted: set[str] = set()
    waiting: dict[str, list[TimelineEntry]] = {}
    ordered: list[TimelineEntry] = []

    def emit(entry: TimelineEntry) -> None:
        ready = [entry]
        while ready:
            current = ready.pop(0)
            ordered.append(current)
            if current.message_id not in emitted:
                emitted.add(current.message_id)
                ready[:0] = waiting.pop(current.message_id, [])

    for entry in entries:
        cause = entry.causation_id
        if (
            cause is not None
            and cause in ids
            and cause not in emitted
            and cause != entry.message_id
        ):
            waiting.setdefault(cause, []).append(entry)
        else:
            emit(entry)
    # Left waiting only on a cycle of causes, which correct ids never make: as recorded.
    left = {id(entry) for queue in waiting.values() for entry in queue}
    ordered.extend(entry for entry in entries if id(entry) in left)
    return ordered


class OrderViews:
    """Queries over orders' read models and saga tables."""

    def __init__(
        self,
        transactions: Transactions,
        summaries: OrderSummaries,
        sales: SalesReport,
        sagas: SagaOverviews,
        timeline: Timeline,
        clock: Clock,
    ) -> None:
        self._tx = transactions
        self._summaries = summaries
        self._sales = sales
        self._sagas = sagas
        self._timeline = timeline
        self._clock = clock

    async def orders_of(
        self, buyer_id: str, after: SummaryKey | None, limit: int
    ) -> list[OrderSummary]:
        async with self._tx.connect() as conn:
            return await self._summaries.of_buyer(conn, buyer_id, after, limit)

    async def sales(self, first: date, last: date) -> list[DailySales]:
        async with self._tx.connect() as conn:
            return await self._sales.between(conn, first, last)

    async def sagas(self, which: SagaFilter, after: str | None, limit: int) -> list[SagaOverview]:
        async with self._tx.connect() as conn:
            return await self._sagas.sagas(
                conn,
                which,
                overdue_before=self._clock.now() - STUCK_OVERDUE,
                stuck_attempts=STUCK_ATTEMPTS,
                after=after,
                limit=limit,
            )

    async def timeline(self, order_id: str) -> list[TimelineEntry]:
        async with self._tx.connect() as conn:
            return causal_order(await self._timeline.of(conn, order_id))
