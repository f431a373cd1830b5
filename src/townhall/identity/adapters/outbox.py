"""Identity's integration events go out through the transactional outbox (topic `identity`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.identity.events import TOPIC, UserRegistered
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue


class OutboxIdentityEvents:
    async def user_registered(self, conn: AsyncConnection, event: UserRegistered) -> None:
        await enqueue(
            conn,
            TOPIC,
            Envelope(type=event.type, key=event.user_id, payload=event.to_payload()),
        )
