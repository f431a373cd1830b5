"""Chat's integration events go out through the transactional outbox (topic `chat`)."""

from __future__ import annotations

from collections.abc import Sequence

from townhall.chat.events import TOPIC, UserMentioned
from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue
from townhall.platform.transaction import Transaction


class OutboxChatEvents:
    async def mentioned(self, tx: Transaction, events: Sequence[UserMentioned]) -> None:
        if events:
            await enqueue(
                connection(tx),
                TOPIC,
                *(
                    Envelope(type=e.type, key=e.mentioned_id, payload=e.to_payload())
                    for e in events
                ),
            )
