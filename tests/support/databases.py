"""A migrated database of each kind for the store contract suites, and what its outbox holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from support.services import create_database, database_name, drop_database, port_open
from townhall.platform.db import Database
from townhall.platform.messaging import Envelope
from townhall.platform.migrations import migrate
from townhall.platform.outbox import outbox_messages


@asynccontextmanager
async def migrated_database(
    kind: str, tmp_path: Path, migrations: Iterable[Path]
) -> AsyncIterator[Database]:
    """A new SQLite file or PostgreSQL database (`kind`) with the platform's and `migrations`'
    tables; disposed of, and the PostgreSQL database dropped, on exit."""
    name = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"
    else:
        name = database_name("c")
        url = await create_database(name)
    database = Database(url)
    try:
        await migrate(database, list(migrations))
        yield database
    finally:
        await database.dispose()
        if name is not None:
            await drop_database(name)


def migrated_app_databases(directory: Path, label: str) -> Iterator[dict[str, str]]:
    """A SQLite file, and a PostgreSQL database when PostgreSQL runs, each migrated with every
    module's tables (as `serve` would); their URLs by kind (`sqlite`, `postgresql`). The
    PostgreSQL database is dropped on exit. For a session fixture: migrating costs seconds."""
    from support.app import settings_for
    from townhall.bootstrap import migrate_database

    def migrated(url: str) -> None:
        asyncio.run(migrate_database(settings_for(url, directory)))

    urls = {"sqlite": f"sqlite+aiosqlite:///{directory / f'{label}.db'}"}
    migrated(urls["sqlite"])
    name: str | None = None
    if port_open("127.0.0.1", 5432):
        name = database_name(label)
        urls["postgresql"] = asyncio.run(create_database(name))
        migrated(urls["postgresql"])
    try:
        yield urls
    finally:
        if name is not None:
            asyncio.run(drop_database(name))


async def outbox_envelopes(database: Database) -> list[tuple[str, Envelope]]:
    """Every `(topic, envelope)` written to the outbox, in order."""
    query = sa.select(outbox_messages.c.topic, outbox_messages.c.body).order_by(
        outbox_messages.c.position
    )
    async with database.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(row.topic, Envelope.from_bytes(row.body.encode())) for row in rows]
