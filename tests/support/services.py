"""Real services for the tests: a fresh PostgreSQL database and key prefixes per test run.

A test that needs a service that is down fails loudly in CI (CI=true) and is skipped only
outside CI, as CONVENTIONS.md asks.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

PG_ADMIN_DSN = os.environ.get("TOWNHALL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TOWNHALL_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("TOWNHALL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("TOWNHALL_TEST_NATS", "nats://127.0.0.1:4222")

# One prefix per test run keeps runs (and developers) on one broker apart.
RUN_ID = uuid.uuid4().hex[:8]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    if port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI needs it; scripts/services.sh starts it)")
    pytest.skip(message)


async def create_database(name: str) -> str:
    """Create an empty PostgreSQL database; returns its SQLAlchemy asyncpg URL."""
    import asyncpg

    require("PostgreSQL", "127.0.0.1", 5432)
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def database_name(label: str) -> str:
    return f"townhall_{RUN_ID}_{label}_{uuid.uuid4().hex[:6]}"
