"""Identity's integration events go out through the transactional outbox (topic `identity`)."""

from __future__ import annotations

from townhall.identity.events import TOPIC, UserRegistered
from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue
from townhall.platform.transaction import Transaction


class OutboxIdentityEvents:
    async def user_registered(self, conn: Transaction, event: UserRegistered) -> None:
        await enqueue(
            connection(conn),
            TOPIC,
            Envelope(type=event.type, key=event.user_id, payload=event.to_payload()),
        )
