"""Shipping's store on SQLAlchemy Core (SQLite and PostgreSQL), its events through the
transactional outbox, and its inbox. Each method takes the service's opaque `Transaction` and
works on the SQLAlchemy connection behind it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue, mark_handled_id
from townhall.platform.transaction import Transaction
from townhall.shipping.adapters.tables import orders, shipments
from townhall.shipping.domain import Shipment, ShipmentStatus
from townhall.shipping.events import TOPIC, CreateShipment
from townhall.shipping.ports import Event, PlacedOrder, PlacedStatus, Received

BY_ORDER = shipments.select().where(shipments.c.order_id == sa.bindparam("order_id"))


def _shipment(row: Any) -> Shipment:
    return Shipment(
        order_id=row.order_id,
        status=ShipmentStatus(row.status),
        shipment_id=row.shipment_id,
        reason=row.reason,
        tracking=row.tracking,
    )


def _values(shipment: Shipment) -> dict[str, Any]:
    return {
        "status": shipment.status.value,
        "shipment_id": shipment.shipment_id,
        "reason": shipment.reason,
        "tracking": shipment.tracking,
        "updated_at": datetime.now(UTC),
    }


def _insert(sql: Any) -> Any:
    return postgresql.insert if sql.dialect.name == "postgresql" else sqlite.insert


class SqlShipments:
    async def get(self, conn: Transaction, order_id: str) -> Shipment | None:
        row = (await connection(conn).execute(BY_ORDER, {"order_id": order_id})).first()
        return _shipment(row) if row else None

    async def add(self, conn: Transaction, shipment: Shipment) -> bool:
        sql = connection(conn)
        values = _values(shipment)
        statement = _insert(sql)(shipments).values(
            order_id=shipment.order_id, created_at=values["updated_at"], **values
        )
        result = await sql.execute(statement.on_conflict_do_nothing())
        return bool(result.rowcount)

    async def update(self, conn: Transaction, shipment: Shipment) -> None:
        await connection(conn).execute(
            shipments.update()
            .where(shipments.c.order_id == shipment.order_id)
            .values(**_values(shipment))
        )

    async def mark_dispatched(self, conn: Transaction, order_id: str, tracking: str) -> bool:
        now = datetime.now(UTC)
        result = await connection(conn).execute(
            shipments.update()
            .where(
                shipments.c.order_id == order_id,
                shipments.c.status == ShipmentStatus.CREATED.value,
                shipments.c.tracking.is_(None),
            )
            .values(tracking=tracking, dispatched_at=now, updated_at=now)
        )
        return bool(result.rowcount)


class OutboxShippingEvents:
    async def publish(self, conn: Transaction, event: Event, cause: Received) -> None:
        envelope = Envelope(
            type=event.type,
            key=event.order_id,
            payload=event.to_payload(),
            headers={"correlation_id": cause.correlation_id, "causation_id": cause.message_id},
        )
        await enqueue(connection(conn), TOPIC, envelope)


class SqlHandledCommands:
    """The platform's inbox (`outbox_inbox`), under the consumer group that handles them."""

    def __init__(self, group: str) -> None:
        self._group = group

    async def first_time(self, conn: Transaction, message_id: str) -> bool:
        return await mark_handled_id(connection(conn), self._group, message_id)


class SqlPlacedOrders:
    async def add(self, conn: Transaction, placed: PlacedOrder) -> bool:
        sql = connection(conn)
        now = datetime.now(UTC)
        statement = _insert(sql)(orders).values(
            order_id=placed.order_id,
            status=placed.status.value,
            request=None if placed.request is None else placed.request.to_payload(),
            paid_message_id=None if placed.paid_by is None else placed.paid_by.message_id,
            paid_correlation_id=None if placed.paid_by is None else placed.paid_by.correlation_id,
            created_at=now,
            updated_at=now,
        )
        result = await sql.execute(statement.on_conflict_do_nothing())
        return bool(result.rowcount)

    async def get(self, conn: Transaction, order_id: str) -> PlacedOrder | None:
        query = orders.select().where(orders.c.order_id == order_id)
        row = (await connection(conn).execute(query)).first()
        if row is None:
            return None
        request = None if row.request is None else CreateShipment.from_payload(row.request)
        paid_by = (
            None
            if row.paid_message_id is None
            else Received(row.paid_message_id, row.paid_correlation_id or row.order_id)
        )
        return PlacedOrder(row.order_id, PlacedStatus(row.status), request, paid_by)

    async def move(
        self, conn: Transaction, order_id: str, from_: tuple[PlacedStatus, ...], to: PlacedStatus
    ) -> bool:
        result = await connection(conn).execute(
            orders.update()
            .where(orders.c.order_id == order_id, orders.c.status.in_([s.value for s in from_]))
            .values(status=to.value, updated_at=datetime.now(UTC))
        )
        return bool(result.rowcount)

    async def fill(self, conn: Transaction, order_id: str, request: CreateShipment) -> bool:
        result = await connection(conn).execute(
            orders.update()
            .where(orders.c.order_id == order_id, orders.c.status == PlacedStatus.PAID.value)
            .values(
                status=PlacedStatus.CREATING.value,
                request=request.to_payload(),
                updated_at=datetime.now(UTC),
            )
        )
        return bool(result.rowcount)
