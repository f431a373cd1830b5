"""Orders kept only as events, in the platform's event store: stream `order-<id>`, appended at
the order's version in the caller's transaction, with a snapshot every N events (the event
store's `Aggregates`, stream type `order`) so that loading a long-lived order replays only the
events after its last snapshot. Reads as of a time replay the stream from its start."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from townhall.orders.domain import (
    STREAM_TYPE,
    Address,
    FailureReason,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    SagaMode,
    event_from_data,
    evolve,
    fold,
    stream_id,
)
from townhall.orders.ports import ConcurrentChange, StoredOrderEvent
from townhall.platform.db import connection
from townhall.platform.eventstore import (
    Aggregates,
    Loaded,
    NewEvent,
    RecordedEvent,
    SnapshotPolicy,
    SqlEventStore,
    VersionConflict,
)
from townhall.platform.transaction import Transaction

# Bump when the snapshot's shape changes: older snapshots are then ignored and replayed over.
SNAPSHOT_SCHEMA = 1


def order_to_snapshot(order: Order | None) -> dict[str, Any] | None:
    if order is None:
        return None
    return {
        "id": str(order.id),
        "buyer_id": order.buyer_id,
        "lines": [asdict(line) for line in order.lines],
        "total_cents": order.total_cents,
        "currency": order.currency,
        "shipping_address": asdict(order.shipping_address),
        "saga_mode": order.saga_mode.value,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "version": order.version,
        "status": order.status.value,
        "reason": None if order.reason is None else order.reason.value,
        "decline_code": order.decline_code,
        "cancel_requested": order.cancel_requested,
        "facts": sorted(order.facts),
    }


def order_from_snapshot(data: dict[str, Any] | None) -> Order | None:
    if data is None:
        return None
    return Order(
        id=uuid.UUID(data["id"]),
        buyer_id=data["buyer_id"],
        lines=tuple(OrderLine(**line) for line in data["lines"]),
        total_cents=data["total_cents"],
        currency=data["currency"],
        shipping_address=Address(**data["shipping_address"]),
        saga_mode=SagaMode(data["saga_mode"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        version=data["version"],
        status=OrderStatus(data["status"]),
        reason=None if data["reason"] is None else FailureReason(data["reason"]),
        decline_code=data["decline_code"],
        cancel_requested=data["cancel_requested"],
        facts=frozenset(data["facts"]),
    )


def _event(recorded: RecordedEvent) -> OrderEvent:
    return event_from_data(recorded.type, recorded.data)


def _evolve(order: Order | None, recorded: RecordedEvent) -> Order | None:
    return evolve(order, _event(recorded))


class EventStoreOrders:
    """The `OrderRepository` on the event store. `snapshot_every`: a snapshot each time an
    order's stream crosses a multiple of it (0: never)."""

    def __init__(self, store: SqlEventStore, *, snapshot_every: int = 100) -> None:
        self._store = store
        self._aggregates: Aggregates[Order | None] = Aggregates(
            store,
            initial=lambda: None,
            evolve=_evolve,
            policy=SnapshotPolicy(every=snapshot_every, per_type={STREAM_TYPE: snapshot_every}),
            to_snapshot=order_to_snapshot,
            from_snapshot=order_from_snapshot,
            schema_version=SNAPSHOT_SCHEMA,
        )

    async def load(self, conn: Transaction, order_id: uuid.UUID) -> Order | None:
        # The snapshot too is read on the caller's connection (`Aggregates.load` takes its
        # own): a handler holding a transaction never waits for a second connection, which a
        # full pool would not give it.
        sql, stream = connection(conn), stream_id(order_id)
        order, version = None, 0
        snapshot = await self._store.load_snapshot(stream, conn=sql)
        if snapshot is not None and snapshot.schema_version == SNAPSHOT_SCHEMA:
            order, version = order_from_snapshot(snapshot.state), snapshot.version
        for recorded in await self._store.read_stream(stream, from_version=version, conn=sql):
            order = evolve(order, _event(recorded))
        return order

    async def as_of(self, conn: Transaction, order_id: uuid.UUID, at: datetime) -> Order | None:
        # The domain's rule for `as_of` (a prefix of the stream, by the events' own times),
        # not the store's recording times.
        recorded = await self._store.read_stream(stream_id(order_id), conn=conn)
        return fold((_event(event) for event in recorded), until=at)

    async def history(self, conn: Transaction, order_id: uuid.UUID) -> list[StoredOrderEvent]:
        recorded = await self._store.read_stream(stream_id(order_id), conn=conn)
        return [
            StoredOrderEvent(
                event=_event(event),
                version=event.version,
                recorded_at=event.recorded_at,
                correlation_id=event.correlation_id,
                causation_id=event.causation_id,
            )
            for event in recorded
        ]

    async def append(
        self,
        conn: Transaction,
        order: Order | None,
        events: Sequence[OrderEvent],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        if not events:
            return
        metadata = {
            key: value
            for key, value in (("correlation_id", correlation_id), ("causation_id", causation_id))
            if value is not None
        }
        new = [
            NewEvent(type=event.type, data=event.to_data(), metadata=metadata) for event in events
        ]
        after = order
        for event in events:
            after = evolve(after, event)
        assert after is not None
        version = 0 if order is None else order.version
        try:
            await self._aggregates.save(
                stream_id(after.id),
                Loaded(order, version, 0),
                new,
                after,
                conn=connection(conn),
            )
        except VersionConflict as conflict:
            raise ConcurrentChange(str(conflict)) from conflict
