"""Fixtures every suite may use: fresh databases on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.services import create_database, database_name, drop_database


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = database_name("t")
    url = await create_database(name)
    yield url
    await drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path) -> AsyncIterator[str]:
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}"
        return
    name = database_name("t")
    url = await create_database(name)
    yield url
    await drop_database(name)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Delete the Redis keys this run created (every test prefix holds the run id): a shared Redis
    must not fill up with the leftovers of test runs. Each xdist worker cleans its own run id."""
    from support.services import REDIS_URL, RUN_ID, port_open

    if not port_open("127.0.0.1", 6379):
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = []
        for key in client.scan_iter(match=f"*{RUN_ID}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()
