"""The feed's integration events go out through the transactional outbox (topic `feed`).

Keys: a follow and an unfollow by one follower stay in order (keyed by the follower); a post's
creation and deletion too (keyed by its author).
"""

from __future__ import annotations

from townhall.feed.events import TOPIC
from townhall.feed.ports import FeedEvent
from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue
from townhall.platform.transaction import Transaction


class OutboxFeedEvents:
    async def publish(self, tx: Transaction, event: FeedEvent) -> None:
        payload = event.to_payload()
        key = payload.get("follower_id") or payload.get("author_id") or ""
        await enqueue(connection(tx), TOPIC, Envelope(type=event.type, key=key, payload=payload))
