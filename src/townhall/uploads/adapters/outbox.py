"""Uploads' integration events go out through the transactional outbox (topic `uploads`), keyed
by the upload, so an upload's received and scanned events stay in order."""

from __future__ import annotations

from townhall.platform.db import connection
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import enqueue
from townhall.platform.transaction import Transaction
from townhall.uploads.events import TOPIC, UploadReceived, UploadScanned


class OutboxUploadEvents:
    async def publish(self, tx: Transaction, event: UploadReceived | UploadScanned) -> None:
        envelope = Envelope(type=event.type, key=event.upload_id, payload=event.to_payload())
        await enqueue(connection(tx), TOPIC, envelope)
