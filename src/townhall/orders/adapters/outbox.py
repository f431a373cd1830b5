"""The orchestrator's commands and the orders module's events leave through the transactional
outbox: written in the saga's transaction, published once it commits."""

from __future__ import annotations

from collections.abc import Sequence

from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue_all
from townhall.platform.transaction import Transaction


class OutboxSagaMessages:
    async def send(self, conn: Transaction, messages: Sequence[tuple[str, Envelope]]) -> None:
        await enqueue_all(connection(conn), messages)
