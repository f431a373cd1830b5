"""`townhall projections rebuild NAME` and `status`, through typer's CliRunner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from typer.testing import CliRunner

from support.eventstore import events
from townhall.platform.eventstore import Projection, Projections, connect
from townhall.platform.eventstore.cli import projections_cli


async def _count(batch, conn) -> None:
    await conn.execute(text("UPDATE placed SET n = n + :k"), {"k": len(batch)})


async def _reset(conn) -> None:
    await conn.execute(text("UPDATE placed SET n = 0"))


async def _seed(url: str) -> None:
    store = await connect(url)
    try:
        async with store.database.transaction() as conn:
            await conn.execute(text("CREATE TABLE placed (n INT)"))
            await conn.execute(text("INSERT INTO placed VALUES (7)"))
        await store.append("order-1", events("Placed", "Placed", "Placed"))
    finally:
        await store.close()


async def _placed(url: str) -> int:
    store = await connect(url, migrate=False)
    try:
        async with store.database.connect() as conn:
            return int((await conn.execute(text("SELECT n FROM placed"))).scalar_one())
    finally:
        await store.close()


def test_status_lists_each_projection_with_checkpoint_and_lag_and_rebuild_replays(
    database_url,
):
    asyncio.run(_seed(database_url))

    @asynccontextmanager
    async def open_registry() -> AsyncIterator[Projections]:
        store = await connect(database_url, migrate=False)
        registry = Projections(store)
        registry.register(Projection("placed-count", _count, _reset))
        try:
            yield registry
        finally:
            await store.close()

    app = projections_cli(open_registry)
    runner = CliRunner()
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert status.output.splitlines()[1].split() == ["placed-count", "0", "3", "3"]

    rebuilt = runner.invoke(app, ["rebuild", "placed-count"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "3 events replayed" in rebuilt.output
    assert asyncio.run(_placed(database_url)) == 3  # the stale 7 was dropped, then replayed
    status = runner.invoke(app, ["status"])
    assert status.output.splitlines()[1].split() == ["placed-count", "3", "3", "0"]

    unknown = runner.invoke(app, ["rebuild", "nope"])
    assert unknown.exit_code == 2
    assert "placed-count" in unknown.output
