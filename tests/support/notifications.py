"""Helpers for notifications tests: a running app wired to a real SMTP server, and waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from support.app import PASSWORD, bearer


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 15.0, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns a truthy value; fail with its last value on timeout."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {within}s; last value: {last!r}")


async def user(
    client: httpx.AsyncClient,
    username: str | None = None,
    *,
    email: str | None = None,
    phone: str | None = None,
) -> tuple[str, dict[str, str]]:
    """Register a user (returns its id and auth headers)."""
    username = username or f"u{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {"username": username, "password": PASSWORD}
    if email:
        body["email"] = email
    if phone:
        body["phone"] = phone
    created = await client.post("/api/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    tokens = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
    )
    return created.json()["id"], bearer(tokens.json())


async def status_of(client: httpx.AsyncClient, admin: dict[str, str], nid: str) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/notifications/{nid}", headers=admin)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def bus_url(kind: str, label: str) -> str:
    """A bus on its own prefix, with short backoffs so retries run in test time."""
    from support.services import AMQP_URL, NATS_URL, REDIS_URL, RUN_ID

    prefix = f"t{RUN_ID}{label}{uuid.uuid4().hex[:6]}"
    base = {
        "memory": "memory://",
        "redis": REDIS_URL,
        "rabbitmq": AMQP_URL,
        "nats": NATS_URL,
    }[kind]
    return f"{base}?prefix={prefix}&partitions=4&backoff_base=0.05&backoff_cap=0.2&queue_expires=60"
