"""The feed's consumer groups record what they applied in the platform's inbox table."""

from __future__ import annotations

from townhall.platform.db import connection
from townhall.platform.outbox import mark_handled_id
from townhall.platform.transaction import Transaction


class SqlInbox:
    async def first_time(self, tx: Transaction, group: str, envelope_id: str) -> bool:
        return await mark_handled_id(connection(tx), group, envelope_id)
