"""The saga store and the saga timeline on SQL (SQLite and PostgreSQL).

A saga is saved only at the version it was read at (`UPDATE ... WHERE version = :read`): on
PostgreSQL a second writer of the same row waits for the first to commit, then finds the
version moved and updates nothing. A due deadline is claimed with `FOR UPDATE SKIP LOCKED`
on PostgreSQL, so processes firing timers at once take different sagas; SQLite has one
writer (`Database.transaction()` takes the write lock at BEGIN), so its claims queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from townhall.orders.adapters.tables import saga_steps, sagas
from townhall.orders.ports import ConcurrentChange, StoredSaga, TimelineEntry
from townhall.orders.saga import Saga
from townhall.platform.db import connection
from townhall.platform.transaction import Transaction


def _utc(value: datetime) -> datetime:
    """SQLite keeps a timestamp's digits and drops its zone: every time goes in as UTC."""
    return value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _columns(saga: Saga) -> dict[str, Any]:
    waiting = saga.waiting
    return {
        "data": saga.to_data(),
        "phase": saga.phase.value,
        "status": None if saga.outcome is None else saga.outcome.status.value,
        "deadline": None if waiting is None else _utc(waiting.deadline),
        "attempt": None if waiting is None else waiting.attempt,
    }


def _stored(row: Any) -> StoredSaga:
    return StoredSaga(row.order_id, Saga.from_data(row.data), row.version)


ORCHESTRATED = sagas.c.mode == "orchestration"
_READ = sa.select(sagas.c.order_id, sagas.c.data, sagas.c.version).where(ORCHESTRATED)


class SqlSagaStore:
    async def add(self, conn: Transaction, order_id: str, saga: Saga, now: datetime) -> None:
        await connection(conn).execute(
            sagas.insert().values(
                order_id=order_id,
                mode="orchestration",
                version=1,
                created_at=_utc(now),
                updated_at=_utc(now),
                **_columns(saga),
            )
        )

    async def get(self, conn: Transaction, order_id: str) -> StoredSaga | None:
        row = (await connection(conn).execute(_READ.where(sagas.c.order_id == order_id))).first()
        return None if row is None else _stored(row)

    async def save(
        self, conn: Transaction, stored: StoredSaga, saga: Saga, now: datetime
    ) -> StoredSaga:
        result = await connection(conn).execute(
            sagas.update()
            .where(sagas.c.order_id == stored.order_id, sagas.c.version == stored.version)
            .values(version=stored.version + 1, updated_at=_utc(now), **_columns(saga))
        )
        if result.rowcount != 1:
            raise ConcurrentChange(
                f"the saga of order {stored.order_id} is no longer at version {stored.version}"
            )
        return StoredSaga(stored.order_id, saga, stored.version + 1)

    async def due(self, conn: Transaction, now: datetime, limit: int) -> list[str]:
        query = (
            sa.select(sagas.c.order_id)
            .where(sagas.c.deadline <= _utc(now), ORCHESTRATED)
            .order_by(sagas.c.deadline)
            .limit(limit)
        )
        return list((await connection(conn).execute(query)).scalars())

    async def claim_due(self, conn: Transaction, order_id: str, now: datetime) -> StoredSaga | None:
        query = _READ.where(sagas.c.order_id == order_id, sagas.c.deadline <= _utc(now))
        sql = connection(conn)
        if sql.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = (await sql.execute(query)).first()
        return None if row is None else _stored(row)


class SqlChoreographies:
    """The rows of the choreographed orders in `orders_sagas` (`mode` `choreography`): phase
    `running` with the deadline after which the order is stuck, then `finished` with its end
    and no deadline."""

    async def add(
        self, conn: Transaction, order_id: str, deadline: datetime, now: datetime
    ) -> None:
        await connection(conn).execute(
            sagas.insert().values(
                order_id=order_id,
                mode="choreography",
                data={"mode": "choreography"},
                version=1,
                phase="running",
                status=None,
                deadline=_utc(deadline),
                attempt=None,
                created_at=_utc(now),
                updated_at=_utc(now),
            )
        )

    async def exists(self, conn: Transaction, order_id: str) -> bool:
        query = sa.select(sagas.c.mode).where(sagas.c.order_id == order_id)
        return (await connection(conn).execute(query)).scalar() == "choreography"

    async def end(self, conn: Transaction, order_id: str, status: str, now: datetime) -> None:
        await connection(conn).execute(
            sagas.update()
            .where(sagas.c.order_id == order_id, sagas.c.mode == "choreography")
            .values(
                phase="finished",
                status=status,
                deadline=None,
                version=sagas.c.version + 1,
                updated_at=_utc(now),
            )
        )


class SqlTimeline:
    async def record(self, conn: Transaction, entries: Sequence[TimelineEntry]) -> None:
        if not entries:
            return
        rows = [
            {
                "order_id": entry.order_id,
                "at": _utc(entry.at),
                "module": entry.module,
                "message_type": entry.message_type,
                "message_id": entry.message_id,
                "correlation_id": entry.correlation_id,
                "causation_id": entry.causation_id,
                "outcome": entry.outcome,
                "detail": entry.detail,
            }
            for entry in entries
        ]
        await connection(conn).execute(saga_steps.insert(), rows)

    async def of(self, conn: Transaction, order_id: str) -> list[TimelineEntry]:
        c = saga_steps.c
        query = (
            sa.select(
                c.order_id,
                c.at,
                c.module,
                c.message_type,
                c.message_id,
                c.correlation_id,
                c.causation_id,
                c.outcome,
                c.detail,
            )
            .where(c.order_id == order_id)
            .order_by(c.id)
        )
        rows = (await connection(conn).execute(query)).all()
        return [
            TimelineEntry(
                order_id=row.order_id,
                at=_aware(row.at),
                module=row.module,
                message_type=row.message_type,
                message_id=row.message_id,
                correlation_id=row.correlation_id,
                causation_id=row.causation_id,
                outcome=row.outcome,
                detail=row.detail,
            )
            for row in rows
        ]
