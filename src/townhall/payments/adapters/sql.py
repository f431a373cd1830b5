"""Payments' stores on SQLAlchemy Core (SQLite and PostgreSQL), its events through the
transactional outbox, and its inbox. Each method takes the service's opaque `Transaction` and
works on the SQLAlchemy connection behind it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from townhall.payments.adapters.tables import payments, vault
from townhall.payments.domain import Payment, PaymentStatus
from townhall.payments.events import TOPIC
from townhall.payments.ports import Received, Reply, Vaulted, VaultStatus
from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue, mark_handled_id
from townhall.platform.transaction import Transaction

BY_ORDER = payments.select().where(payments.c.order_id == sa.bindparam("order_id"))


def _payment(row: Any) -> Payment:
    return Payment(
        order_id=row.order_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        capture_key=row.capture_key,
        status=PaymentStatus(row.status),
        payment_id=row.payment_id,
        refunded_cents=row.refunded_cents,
        decline_code=row.decline_code,
        payment_method=row.payment_method,
    )


def _values(payment: Payment) -> dict[str, Any]:
    return {
        "amount_cents": payment.amount_cents,
        "currency": payment.currency,
        "capture_key": payment.capture_key,
        "status": payment.status.value,
        "payment_id": payment.payment_id,
        "refunded_cents": payment.refunded_cents,
        "decline_code": payment.decline_code,
        "payment_method": payment.payment_method,
        "updated_at": datetime.now(UTC),
    }


class SqlPayments:
    async def get(self, conn: Transaction, order_id: str) -> Payment | None:
        row = (await connection(conn).execute(BY_ORDER, {"order_id": order_id})).first()
        return _payment(row) if row else None

    async def add(self, conn: Transaction, payment: Payment) -> bool:
        sql = connection(conn)
        insert = postgresql.insert if sql.dialect.name == "postgresql" else sqlite.insert
        values = _values(payment)
        statement = insert(payments).values(
            order_id=payment.order_id, created_at=values["updated_at"], **values
        )
        result = await sql.execute(statement.on_conflict_do_nothing())
        return bool(result.rowcount)

    async def update(self, conn: Transaction, payment: Payment) -> None:
        await connection(conn).execute(
            payments.update()
            .where(payments.c.order_id == payment.order_id)
            .values(**_values(payment))
        )


class OutboxPaymentEvents:
    async def publish(self, conn: Transaction, event: Reply, cause: Received) -> None:
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


def _vaulted(row: Any) -> Vaulted:
    return Vaulted(
        order_id=row.order_id,
        payment_method=row.payment_method,
        amount_cents=row.amount_cents,
        currency=row.currency,
        status=VaultStatus(row.status),
    )


class SqlVault:
    async def add(self, conn: Transaction, vaulted: Vaulted) -> bool:
        sql = connection(conn)
        insert = postgresql.insert if sql.dialect.name == "postgresql" else sqlite.insert
        now = datetime.now(UTC)
        statement = insert(vault).values(
            order_id=vaulted.order_id,
            payment_method=vaulted.payment_method,
            amount_cents=vaulted.amount_cents,
            currency=vaulted.currency,
            status=vaulted.status.value,
            created_at=now,
            updated_at=now,
        )
        result = await sql.execute(statement.on_conflict_do_nothing())
        return bool(result.rowcount)

    async def get(self, conn: Transaction, order_id: str) -> Vaulted | None:
        query = vault.select().where(vault.c.order_id == order_id)
        row = (await connection(conn).execute(query)).first()
        return _vaulted(row) if row else None

    async def move(
        self, conn: Transaction, order_id: str, from_: tuple[VaultStatus, ...], to: VaultStatus
    ) -> bool:
        result = await connection(conn).execute(
            vault.update()
            .where(vault.c.order_id == order_id, vault.c.status.in_([s.value for s in from_]))
            .values(status=to.value, updated_at=datetime.now(UTC))
        )
        return bool(result.rowcount)
