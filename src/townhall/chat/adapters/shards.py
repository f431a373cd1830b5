"""The message-store shards: each a database holding chat's message tables, and the
consistent-hash ring that gives each room its shard.

A shard is named by its URL without credentials or query (`postgresql://host:5432/chat1`), so
a name stays the same when a password changes and never holds a secret; the names are what
`chat_rooms.shard` stores. The main database is a shard like the others when it is listed (and
the only one when `TOWNHALL_CHAT_SHARDS` is empty).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.engine import make_url

from townhall.chat.adapters.tables import message_metadata
from townhall.chat.ring import HashRing
from townhall.platform.db import Database

log = logging.getLogger(__name__)


def shard_name(url: str) -> str:
    parsed = make_url(url)
    name = parsed.set(username=None, password=None, query={})
    return name.render_as_string(hide_password=False)


class DatabaseShards:
    def __init__(self, main: Database, urls: Sequence[str] = ()) -> None:
        self.main = main
        self.main_name = shard_name(main.url)
        self._databases: dict[str, Database] = {}
        for url in urls or [main.url]:
            name = shard_name(url)
            self._databases[name] = main if name == self.main_name else Database(url)
        self.ring = HashRing(self._databases)

    @property
    def names(self) -> list[str]:
        return sorted(self._databases)

    def owner(self, room_id: str) -> str:
        return self.ring.shard_for(room_id)

    def database(self, shard: str) -> Database:
        try:
            return self._databases[shard]
        except KeyError:
            # A room placed on a shard no longer listed: its history is there until
            # `townhall chat rebalance` moves it, so the shard must stay listed until then.
            raise LookupError(
                f"chat shard {shard!r} is not in TOWNHALL_CHAT_SHARDS; list it until "
                "`townhall chat rebalance` has moved its rooms"
            ) from None

    async def create_tables(self) -> None:
        """The message tables on every shard but the main database (whose migrations make
        them): created when missing. A shard that cannot be reached is logged and left: its
        rooms refuse sends (`unavailable`) until it is back, the others work."""
        for name, database in self._databases.items():
            if database is self.main:
                continue
            try:
                async with database.transaction() as conn:
                    await conn.run_sync(message_metadata.create_all)
            except Exception as exc:
                log.warning("chat shard %s cannot be reached: %s", name, exc)

    async def close(self) -> None:
        for database in self._databases.values():
            if database is not self.main:
                await database.dispose()
