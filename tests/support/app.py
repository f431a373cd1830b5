"""Build the real app in-process (httpx over ASGI) for HTTP tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from townhall.bootstrap import Runtime, assemble
from townhall.config import Settings

PASSWORD = "correct horse battery"


def settings_for(database_url: str, tmp_path: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp_path,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(
    settings: Settings, modules: list[str] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    runtime = await assemble(settings, modules)
    app = runtime.create_app()
    await runtime.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://townhall") as client:
            yield client, runtime
    finally:
        await runtime.stop()


async def register_and_sign_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, Any]:
    created = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": password}
    )
    assert created.status_code == 201, created.text
    tokens = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    )
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


@dataclass(frozen=True)
class SignedUp:
    """A user a test registered and signed in: their id, username and bearer header."""

    id: str
    username: str
    headers: dict[str, str]


async def sign_up(
    client: httpx.AsyncClient, label: str = "u", email: str | None = None
) -> SignedUp:
    """A new user (`label` and a random suffix), registered and signed in over HTTP."""
    username = f"{label}{uuid.uuid4().hex[:8]}"
    body = {"username": username, "password": PASSWORD}
    created = await client.post(
        "/api/v1/auth/register", json={**body, **({"email": email} if email else {})}
    )
    assert created.status_code == 201, created.text
    tokens = await client.post("/api/v1/auth/token", json=body)
    assert tokens.status_code == 200, tokens.text
    return SignedUp(str(created.json()["id"]), username, bearer(tokens.json()))


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@asynccontextmanager
async def uvicorn_serving(app: Any, **options: Any) -> AsyncIterator[int]:
    """`app` served by uvicorn in this process on a free port of 127.0.0.1, as `townhall serve`
    runs it (`options`: more of uvicorn's Config); yields the port, and stops the server."""
    import asyncio

    import uvicorn

    from townhall.listening import listen

    sockets = listen("127.0.0.1", 0)
    port = int(sockets[0].getsockname()[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        **options,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=sockets))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise AssertionError("the server stopped before it started")
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        for sock in sockets:
            sock.close()
