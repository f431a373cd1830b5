"""Inventory's answers go out through the transactional outbox (topic `inventory`, keyed by
the order id), and the messages it handled are kept in the platform's inbox table."""

from __future__ import annotations

from townhall.inventory.events import TOPIC
from townhall.inventory.ports import Answer, Cause
from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue, mark_handled_id
from townhall.platform.transaction import Transaction


class OutboxMessages:
    async def first_delivery(self, tx: Transaction, group: str, message_id: str) -> bool:
        return await mark_handled_id(connection(tx), group, message_id)

    async def publish(self, tx: Transaction, answer: Answer, cause: Cause) -> None:
        headers = {}
        if cause.correlation_id is not None:
            headers["correlation_id"] = cause.correlation_id
        if cause.message_id is not None:
            headers["causation_id"] = cause.message_id
        envelope = Envelope(
            type=answer.type, key=answer.order_id, payload=answer.to_payload(), headers=headers
        )
        await enqueue(connection(tx), TOPIC, envelope)
