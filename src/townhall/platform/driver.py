"""PostgreSQL hot paths: single statements run straight on asyncpg, on a small pool.

Each statement runs in autocommit (a single statement is its own transaction) as a
server-side prepared statement that asyncpg caches per connection. It skips SQLAlchemy's
connection, pool, execution-context and result layers, which cost about 160 us of CPU per
statement on this project's 2-core benchmark machine, more than asyncpg itself (about 240 us
with the event loop's share). For the few statements a process runs per request or per
message; everything else, and anything that must commit together with other statements,
stays on SQLAlchemy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError


class AsyncpgPath:
    """A lazily opened asyncpg pool on the database of a SQLAlchemy `url`."""

    def __init__(
        self, url: str, *, max_size: int, server_settings: dict[str, str] | None = None
    ) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._max_size = max_size
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._max_size,
                        server_settings=self._server_settings,
                        reset=_keep_session,
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


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Give a connection back to the pool as it is. The pool's default reset is a round trip
    (`RESET ALL`, `UNLISTEN *`, advisory locks released, ...) on every release, for session
    state that single statements never leave behind; a transaction left open is still rolled
    back by asyncpg itself before this is called."""


def translated(query: str, args: Any, error: asyncpg.PostgresError) -> DBAPIError:
    """asyncpg's errors as SQLAlchemy's, as a caller's other paths raise them."""
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(query, args, error)
    return DBAPIError(query, args, error)
