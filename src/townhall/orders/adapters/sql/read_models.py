"""Orders' read models (CQRS) on SQL, each a projection of the event store's order streams:
`orders.summaries` (one row per order) and `orders.sales` (confirmed sales per product per
day); and the administrators' lists of sagas, read from `orders_sagas`.

A projection's handler gets a batch of events and the subscription's transaction, which also
moves its checkpoint: it reads the rows the batch touches in one query, applies the batch in
memory and writes each table once (an executemany, or one upsert). Applying is idempotent: a
summary keeps the position of the last event applied and skips any event at or below it; a
basket is counted into the sales once (its state moves from `open` to `counted` or `void`, and
never back). `reset` empties the tables, for a rebuild.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.orders.adapters.tables import sagas, sales, sales_baskets, summaries
from townhall.orders.domain import (
    EVENT_TYPES,
    STREAM_TYPE,
    OrderCancelled,
    OrderConfirmed,
    OrderFailed,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    event_from_data,
)
from townhall.orders.ports import (
    DailySales,
    OrderSummary,
    SagaFilter,
    SagaOverview,
    SummaryKey,
)
from townhall.platform.db import connection
from townhall.platform.eventstore import RecordedEvent
from townhall.platform.transaction import Transaction

SUMMARIES = "orders.summaries"
SALES = "orders.sales"
_PREFIX = f"{STREAM_TYPE}-"


def _utc(value: datetime) -> datetime:
    """SQLite keeps a timestamp's digits and drops its zone: every time goes in as UTC."""
    return value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _order_events(events: Sequence[RecordedEvent]) -> list[tuple[str, RecordedEvent]]:
    """The batch's events of order streams, with their order id."""
    return [
        (event.stream_id.removeprefix(_PREFIX), event)
        for event in events
        if event.stream_id.startswith(_PREFIX) and event.type in EVENT_TYPES
    ]


def _lines(placed: OrderPlaced) -> list[dict[str, Any]]:
    return [
        {"sku": x.sku, "quantity": x.quantity, "unit_price_cents": x.unit_price_cents}
        for x in placed.lines
    ]


def _upsert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# --- orders.summaries -------------------------------------------------------------------------

_OPEN, _COUNTED, _VOID = "open", "counted", "void"  # a sales basket's states
_CHANGING = ("status", "reason", "decline_code", "updated_at", "version", "position")


class SqlOrderSummaries:
    """The projection `orders.summaries` and the buyer's list it serves."""

    name = SUMMARIES

    async def project(self, events: Sequence[RecordedEvent], conn: Transaction) -> None:
        ours = _order_events(events)
        if not ours:
            return
        sql = connection(conn)
        c = summaries.c
        ids = sorted({order_id for order_id, _ in ours})
        query = sa.select(*(getattr(c, name) for name in ("order_id", *_CHANGING))).where(
            c.order_id.in_(ids)
        )
        known = {row.order_id: dict(row._mapping) for row in await sql.execute(query)}
        new: dict[str, dict[str, Any]] = {}
        changed: set[str] = set()
        for order_id, recorded in ours:
            row = new.get(order_id) or known.get(order_id)
            if row is not None and recorded.position <= row["position"]:
                continue  # applied already
            event = event_from_data(recorded.type, recorded.data)
            if isinstance(event, OrderPlaced):
                if row is not None:
                    continue
                new[order_id] = {
                    "order_id": order_id,
                    "buyer_id": event.buyer_id,
                    "status": OrderStatus.PENDING.value,
                    "reason": None,
                    "decline_code": None,
                    "items": _lines(event),
                    "total_cents": event.total_cents,
                    "currency": event.currency,
                    "created_at": _utc(event.at),
                    "updated_at": _utc(event.at),
                    "version": recorded.version,
                    "position": recorded.position,
                }
                continue
            if row is None:
                continue  # a stream always starts with OrderPlaced; nothing to attach this to
            match event:
                case OrderConfirmed():
                    row["status"] = OrderStatus.CONFIRMED.value
                case OrderFailed(reason=reason, decline_code=code):
                    row.update(
                        status=OrderStatus.FAILED.value, reason=reason.value, decline_code=code
                    )
                case OrderCancelled():
                    row["status"] = OrderStatus.CANCELLED.value
            row.update(
                updated_at=_utc(event.at), version=recorded.version, position=recorded.position
            )
            if order_id not in new:
                changed.add(order_id)
        if new:
            await sql.execute(summaries.insert(), list(new.values()))
        if changed:
            update = (
                summaries.update()
                .where(c.order_id == sa.bindparam("key"))
                .values({name: sa.bindparam(f"new_{name}") for name in _CHANGING})
            )
            rows = [
                {"key": order_id, **{f"new_{n}": known[order_id][n] for n in _CHANGING}}
                for order_id in sorted(changed)
            ]
            await sql.execute(update, rows)

    async def reset(self, conn: Transaction) -> None:
        await connection(conn).execute(summaries.delete())

    async def of_buyer(
        self, conn: Transaction, buyer_id: str, after: SummaryKey | None, limit: int
    ) -> list[OrderSummary]:
        c = summaries.c
        query = sa.select(summaries).where(c.buyer_id == buyer_id)
        if after is not None:
            at = _utc(after.created_at)
            query = query.where(
                sa.or_(c.created_at < at, sa.and_(c.created_at == at, c.order_id < after.order_id))
            )
        query = query.order_by(c.created_at.desc(), c.order_id.desc()).limit(limit)
        return [
            OrderSummary(
                order_id=row.order_id,
                buyer_id=row.buyer_id,
                status=row.status,
                reason=row.reason,
                decline_code=row.decline_code,
                items=tuple(OrderLine(**item) for item in row.items),
                total_cents=row.total_cents,
                currency=row.currency,
                created_at=_aware(row.created_at),
                updated_at=_aware(row.updated_at),
                version=row.version,
            )
            for row in await connection(conn).execute(query)
        ]


# --- orders.sales -----------------------------------------------------------------------------


class SqlSales:
    """The projection `orders.sales`: on `OrderConfirmed`, the order's lines (remembered from
    its `OrderPlaced` in `orders_sales_baskets`) are added to the day of the confirmation."""

    name = SALES

    async def project(self, events: Sequence[RecordedEvent], conn: Transaction) -> None:
        ours = [
            (order_id, recorded)
            for order_id, recorded in _order_events(events)
            if recorded.type
            in (OrderPlaced.type, OrderConfirmed.type, OrderFailed.type, OrderCancelled.type)
        ]
        if not ours:
            return
        sql = connection(conn)
        b = sales_baskets.c
        ids = sorted({order_id for order_id, _ in ours})
        known = {
            row.order_id: dict(row._mapping)
            for row in await sql.execute(sa.select(sales_baskets).where(b.order_id.in_(ids)))
        }
        baskets = {order_id: dict(row) for order_id, row in known.items()}
        # (day, sku, currency) -> [quantity, revenue, orders]
        added: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for order_id, recorded in ours:
            event = event_from_data(recorded.type, recorded.data)
            basket = baskets.get(order_id)
            if isinstance(event, OrderPlaced):
                if basket is None:
                    baskets[order_id] = {
                        "order_id": order_id,
                        "lines": _lines(event),
                        "currency": event.currency,
                        "state": _OPEN,
                    }
            elif basket is None or basket["state"] != _OPEN:
                continue  # counted or void already, or an order this projection never saw
            elif isinstance(event, OrderConfirmed):
                day = event.at.astimezone(UTC).date()
                for line in basket["lines"]:
                    total = added[day, line["sku"], basket["currency"]]
                    total[0] += line["quantity"]
                    total[1] += line["quantity"] * line["unit_price_cents"]
                    total[2] += 1
                basket["state"] = _COUNTED
            else:  # failed or cancelled: it never sells
                basket.update(state=_VOID, lines=[])
        inserted = [row for order_id, row in baskets.items() if order_id not in known]
        closed = [
            {"key": order_id, "new_state": row["state"], "new_lines": row["lines"]}
            for order_id, row in baskets.items()
            if order_id in known and row["state"] != known[order_id]["state"]
        ]
        if inserted:
            await sql.execute(sales_baskets.insert(), inserted)
        if closed:
            close = (
                sales_baskets.update()
                .where(b.order_id == sa.bindparam("key"))
                .values(state=sa.bindparam("new_state"), lines=sa.bindparam("new_lines"))
            )
            await sql.execute(close, closed)
        if added:
            insert = _upsert(sql)(sales)
            await sql.execute(
                insert.on_conflict_do_update(
                    index_elements=["day", "sku", "currency"],
                    set_={
                        "quantity": sales.c.quantity + insert.excluded.quantity,
                        "revenue_cents": sales.c.revenue_cents + insert.excluded.revenue_cents,
                        "orders": sales.c.orders + insert.excluded.orders,
                    },
                ),
                [
                    {
                        "day": day,
                        "sku": sku,
                        "currency": currency,
                        "quantity": quantity,
                        "revenue_cents": revenue,
                        "orders": orders,
                    }
                    for (day, sku, currency), (quantity, revenue, orders) in sorted(added.items())
                ],
            )

    async def reset(self, conn: Transaction) -> None:
        sql = connection(conn)
        await sql.execute(sales.delete())
        await sql.execute(sales_baskets.delete())

    async def between(self, conn: Transaction, first: date, last: date) -> list[DailySales]:
        c = sales.c
        query = (
            sa.select(sales).where(c.day >= first, c.day <= last).order_by(c.day, c.sku, c.currency)
        )
        return [
            DailySales(
                day=row.day,
                sku=row.sku,
                currency=row.currency,
                quantity=row.quantity,
                revenue_cents=row.revenue_cents,
                orders=row.orders,
            )
            for row in await connection(conn).execute(query)
        ]


# --- the administrators' lists of sagas -------------------------------------------------------


class SqlSagaOverviews:
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
        c = sagas.c
        query = sa.select(
            c.order_id,
            c.mode,
            c.phase,
            c.status,
            c.deadline,
            c.attempt,
            c.created_at,
            c.updated_at,
        )
        if which is SagaFilter.FAILED:
            query = query.where(c.status == OrderStatus.FAILED.value)
        elif which is SagaFilter.RUNNING:
            query = query.where(c.status.is_(None))
        else:  # waiting on a command (a deadline set), running or not, for too long
            query = query.where(
                c.deadline.is_not(None),
                sa.or_(c.deadline < _utc(overdue_before), c.attempt >= stuck_attempts),
            )
        if after is not None:
            query = query.where(c.order_id < after)
        query = query.order_by(c.order_id.desc()).limit(limit)
        return [
            SagaOverview(
                order_id=row.order_id,
                mode=row.mode,
                phase=row.phase,
                status=row.status,
                deadline=None if row.deadline is None else _aware(row.deadline),
                attempt=row.attempt,
                created_at=_aware(row.created_at),
                updated_at=_aware(row.updated_at),
            )
            for row in await connection(conn).execute(query)
        ]
