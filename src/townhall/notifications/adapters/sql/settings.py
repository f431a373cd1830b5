"""`SqlPreferenceStore` and `SqlDevices`: what each user set, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa

from townhall.notifications.adapters.sql.rows import preferences_columns, preferences_of
from townhall.notifications.adapters.tables import devices, preferences
from townhall.notifications.domain import DeviceToken, Preferences, PushPlatform
from townhall.platform.batching import Batcher
from townhall.platform.db import Database

BATCH_SIZE = 100  # at most this many users' devices read in one query


class SqlPreferenceStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, user_id: str) -> Preferences:
        async with self._db.connect() as conn:
            row = (
                await conn.execute(preferences.select().where(preferences.c.user_id == user_id))
            ).first()
        if row is None:
            return Preferences()
        return preferences_of(row.opted_out, row.quiet_start, row.quiet_end, row.time_zone)

    async def put(self, user_id: str, prefs: Preferences) -> None:
        values = preferences_columns(prefs)
        async with self._db.transaction() as conn:
            updated = await conn.execute(
                preferences.update().where(preferences.c.user_id == user_id).values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(preferences.insert().values(user_id=user_id, **values))


class SqlDevices:
    def __init__(self, database: Database) -> None:
        self._db = database
        # The push worker asks for the devices of each recipient it sends to: concurrent
        # asks go as one query.
        self._reads = Batcher(self._read_batch, max_size=BATCH_SIZE)

    async def of_user(self, user_id: str) -> tuple[DeviceToken, ...]:
        return await self._reads.submit(user_id)

    async def add(self, user_id: str, device: DeviceToken, now: datetime) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(devices.delete().where(devices.c.token == device.token))
            await conn.execute(
                devices.insert().values(
                    token=device.token,
                    user_id=user_id,
                    platform=device.platform.value,
                    created_at=now,
                )
            )

    async def remove(self, token: str, user_id: str | None = None) -> bool:
        query = devices.delete().where(devices.c.token == token)
        if user_id is not None:
            query = query.where(devices.c.user_id == user_id)
        async with self._db.autocommit() as conn:
            return bool((await conn.execute(query)).rowcount)

    async def of_users(self, user_ids: Collection[str]) -> dict[str, tuple[DeviceToken, ...]]:
        """The devices of each of `user_ids` that has any, oldest first, in one query."""
        query = (
            sa.select(devices.c.user_id, devices.c.platform, devices.c.token)
            .where(devices.c.user_id.in_(list(user_ids)))
            .order_by(devices.c.created_at)
        )
        found: dict[str, list[DeviceToken]] = {}
        async with self._db.connect() as conn:
            for row in await conn.execute(query):
                found.setdefault(row.user_id, []).append(
                    DeviceToken(PushPlatform(row.platform), row.token)
                )
        return {user_id: tuple(tokens) for user_id, tokens in found.items()}

    async def _read_batch(self, user_ids: Sequence[str]) -> list[tuple[DeviceToken, ...]]:
        found = await self.of_users(set(user_ids))
        return [found.get(user_id, ()) for user_id in user_ids]
