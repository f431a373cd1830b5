"""PostgreSQL hot path: the store's own appends and reads on a small asyncpg pool.

SQLAlchemy's pool pings each connection it hands out and wraps every statement in an
explicit BEGIN/COMMIT; for an append that is one statement anyway (see `APPEND`) that is
three round trips where one will do. Here the statement runs in autocommit (a single
statement is its own transaction, holding the position counter's row lock until it
commits) as a server-side prepared statement that asyncpg caches per connection.
Appends that join a caller's transaction, and reads on a caller's connection, stay on
SQLAlchemy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

# The whole append in one statement: check the stream's version, take positions from the
# counter (only when the check passed, so a failed check takes no lock and moves nothing)
# and insert. It returns the versions written; none means the check failed.
APPEND = """
WITH current AS (
  SELECT coalesce(max(version), 0) AS v FROM eventstore_events WHERE stream_id = $1::text
), checked AS (
  SELECT v FROM current WHERE $2::int < 0 OR v = $2::int
), taken AS (
  UPDATE eventstore_position SET last = last + $3::bigint
  WHERE id = 1 AND EXISTS (SELECT 1 FROM checked) RETURNING last
)
INSERT INTO eventstore_events (position, stream_id, version, event_id, type,
                               schema_version, data, metadata, recorded_at)
SELECT taken.last - $3::bigint + e.ord, $1::text, checked.v + e.ord, e.event_id, e.type,
       e.schema_version, e.data::json, e.metadata::json, $4::timestamptz
FROM taken, checked,
     unnest($5::text[], $6::text[], $7::int[], $8::text[], $9::text[])
       WITH ORDINALITY AS e(event_id, type, schema_version, data, metadata, ord)
RETURNING version
"""


class AsyncpgPath:
    """A lazily opened asyncpg pool on the store's database."""

    def __init__(self, url: str, *, max_size: int) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self._max_size
                    )
        return self._pool

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        pool = await self.pool()
        try:
            async with pool.acquire() as conn:
                return list(await conn.fetch(query, *args))
        except asyncpg.PostgresError as error:
            raise translated(query, args, error) from error

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


def translated(query: str, args: Any, error: asyncpg.PostgresError) -> DBAPIError:
    """asyncpg's errors as SQLAlchemy's, as the store's other paths raise them."""
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(query, args, error)
    return DBAPIError(query, args, error)
