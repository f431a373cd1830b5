"""`SqlIdempotencyKeys`: the buyers' idempotency keys (SQLAlchemy Core, SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from townhall.orders.adapters.tables import idempotency_keys
from townhall.orders.ports import ConcurrentChange, KnownKey
from townhall.platform.db import connection
from townhall.platform.transaction import Transaction


class SqlIdempotencyKeys:
    async def find(self, conn: Transaction, buyer_id: str, key: str) -> KnownKey | None:
        query = sa.select(idempotency_keys.c.fingerprint, idempotency_keys.c.order_id).where(
            idempotency_keys.c.buyer_id == buyer_id, idempotency_keys.c.key == key
        )
        row = (await connection(conn).execute(query)).first()
        return None if row is None else KnownKey(row.fingerprint, row.order_id)

    async def remember(
        self,
        conn: Transaction,
        buyer_id: str,
        key: str,
        known: KnownKey,
        now: datetime,
    ) -> None:
        try:
            await connection(conn).execute(
                idempotency_keys.insert().values(
                    buyer_id=buyer_id,
                    key=key,
                    fingerprint=known.fingerprint,
                    order_id=known.order_id,
                    created_at=now,
                )
            )
        except IntegrityError:
            raise ConcurrentChange(f"idempotency key {key!r} was taken meanwhile") from None
