"""Helpers for chat's one-process integration tests: the app (identity + chat) served by a
real uvicorn on a free port (WebSockets need a server), users signed in over HTTP, and a
WebSocket client that reads frames as a chat client does.

Stacks (`CHAT_STACKS`): the embedded defaults (SQLite, in-process pub/sub and presence), and
PostgreSQL with Redis pub/sub and Redis presence (`TOWNHALL_REDIS_URL`), on a per-run prefix.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.app import PASSWORD, register_and_sign_in, settings_for, uvicorn_serving
from support.notifications import eventually
from support.services import (
    PG_ADMIN_DSN,
    REDIS_URL,
    RUN_ID,
    create_database,
    database_name,
    drop_database,
    require,
)
from townhall.bootstrap import Runtime, assemble
from townhall.platform.outbox import outbox_messages

CHAT_STACKS = ("sqlite+memory", "postgresql+redis")
WITHIN = 10.0  # seconds a frame or a state a test waits for may take before the test fails
SECRET = "chat-integration-secret-of-at-least-32-chars"


@dataclass(frozen=True)
class ChatStack:
    name: str
    database_url: str
    pubsub_url: str
    redis_url: str | None


@asynccontextmanager
async def chat_stack(name: str, tmp_path: Any) -> AsyncIterator[ChatStack]:
    if name == "sqlite+memory":
        yield ChatStack(name, f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", "memory://", None)
        return
    require("Redis", "127.0.0.1", 6379)
    prefix = f"t{RUN_ID}chat{uuid.uuid4().hex[:6]}"
    database = database_name("chat")
    url = await create_database(database)
    try:
        yield ChatStack(name, url, f"{REDIS_URL}?prefix={prefix}", REDIS_URL)
    finally:
        await drop_database(database)


@pytest.fixture(params=CHAT_STACKS)
async def stack(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[ChatStack]:
    """The test runs once on each stack of `CHAT_STACKS`."""
    async with chat_stack(request.param, tmp_path) as made:
        yield made


@asynccontextmanager
async def database_unreachable(stack: ChatStack) -> AsyncIterator[None]:
    """The stack's PostgreSQL database refuses connections and drops the open ones, until
    the block ends."""
    import asyncpg

    assert stack.database_url.startswith("postgresql"), stack
    name = stack.database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


@dataclass(frozen=True)
class ChatUser:
    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class ChatServer:
    """The app on a real server: `http` is a client of it; `connect` opens a socket."""

    def __init__(self, runtime: Runtime, port: int, http: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.port = port
        self.http = http
        self.sockets: list[Socket] = []

    def ws_url(self, token: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/api/v1/chat/ws"
        return url if token is None else f"{url}?token={token}"

    async def user(self, username: str) -> ChatUser:
        tokens = await register_and_sign_in(self.http, username, PASSWORD)
        me = await self.http.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status_code == 200, me.text
        return ChatUser(str(me.json()["id"]), username, str(tokens["access_token"]))

    async def users(self, *usernames: str) -> list[ChatUser]:
        return [await self.user(name) for name in usernames]

    async def connect(self, user: ChatUser | None = None, *, url: str | None = None) -> Socket:
        if url is None:
            assert user is not None
            url = self.ws_url(user.token)
        socket = Socket(await connect(url, open_timeout=WITHIN, max_size=None))
        self.sockets.append(socket)
        return socket

    async def room(self, owner: ChatUser, name: str, *members: ChatUser) -> dict[str, Any]:
        made = await self.http.post(
            "/api/v1/chat/rooms",
            json={"name": name, "members": [m.id for m in members]},
            headers=owner.headers,
        )
        assert made.status_code == 201, made.text
        return dict(made.json())

    async def rooms(self, user: ChatUser) -> dict[str, dict[str, Any]]:
        """`GET /rooms` of `user`, by room id."""
        listed = await self.http.get("/api/v1/chat/rooms", headers=user.headers)
        assert listed.status_code == 200, listed.text
        return {room["id"]: room for room in listed.json()["items"]}

    async def history(self, user: ChatUser, room: str, **params: Any) -> httpx.Response:
        return await self.http.get(
            f"/api/v1/chat/rooms/{room}/messages", params=params, headers=user.headers
        )

    async def presence(self, user: ChatUser, room: str) -> dict[str, str]:
        found = await self.http.get(f"/api/v1/chat/rooms/{room}/presence", headers=user.headers)
        assert found.status_code == 200, found.text
        return {item["user"]: item["status"] for item in found.json()["items"]}

    async def wait_for_presence(
        self, asker: ChatUser, room: str, user: ChatUser, status: str
    ) -> None:
        """Until the presence endpoint says `status` for `user` (presence is recorded in the
        background: A/L)."""

        async def says() -> bool:
            return (await self.presence(asker, room)).get(user.id) == status

        await eventually(says, within=WITHIN)

    async def outbox(self, message_type: str) -> list[dict[str, Any]]:
        """The envelopes of `message_type` enqueued on the outbox, oldest first."""
        query = sa.select(outbox_messages.c.body).order_by(outbox_messages.c.position)
        async with self.runtime.platform.database.connect() as conn:
            bodies = [json.loads(body) for body in (await conn.execute(query)).scalars()]
        return [body for body in bodies if body["type"] == message_type]


class Socket:
    """A chat client's socket: JSON frames out, JSON frames in."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []  # every frame received, skipped ones included

    async def send(self, **frame: Any) -> None:
        await self.connection.send(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def frame(self, *, skip: Collection[str] = ("presence",)) -> dict[str, Any]:
        """The next frame whose op is not in `skip` (presence frames come whenever members
        connect, so by default they are not what a test reads next)."""
        while True:
            try:
                text = await asyncio.wait_for(self.connection.recv(), WITHIN)
            except TimeoutError:
                raise AssertionError(f"no frame within {WITHIN}s; seen {self.seen}") from None
            frame = json.loads(text)
            self.seen.append(frame)
            if frame.get("op") not in skip:
                return dict(frame)

    async def expect(self, op: str, **fields: Any) -> dict[str, Any]:
        """The next frame (not skipped) is `op` with these fields."""
        frame = await self.frame()
        assert frame.get("op") == op, f"expected {op!r}, got {frame}"
        for name, value in fields.items():
            assert frame.get(name) == value, f"{name}: expected {value!r} in {frame}"
        return frame

    async def until(self, op: str, **fields: Any) -> dict[str, Any]:
        """Read on to the first frame `op` with these fields (presence frames included)."""
        while True:
            frame = await self.frame(skip=())
            if frame.get("op") == op and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": "join", "room": room}
        if since is not None:
            frame["since"] = since
        await self.send(**frame)
        return await self.expect("joined", room=room)

    async def quiet(self) -> None:
        """Nothing but presence is waiting before the answer to a ping: what the server
        pushed to this socket before it read the ping came first."""
        await self.send(op="ping")
        await self.expect("pong")

    async def closed(self) -> tuple[int, str]:
        """Read until the server closes the socket: (close code, reason)."""
        try:
            while True:
                text = await asyncio.wait_for(self.connection.recv(), WITHIN)
                self.seen.append(json.loads(text))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, f"closed without a close frame: {closed}"
            return closed.rcvd.code, closed.rcvd.reason
        except TimeoutError:
            raise AssertionError(f"the socket stayed open; seen {self.seen}") from None

    async def close(self) -> None:
        """Close (a client that left more than 16 frames unread waits out its close timeout:
        websockets stops reading the connection, the server's close frame included)."""
        await self.connection.close()


@asynccontextmanager
async def chat_server(
    stack: ChatStack, tmp_path: Any, **overrides: Any
) -> AsyncIterator[ChatServer]:
    """identity + chat on `stack`, served by uvicorn in this process (as `townhall serve`
    configures it) on a free port; `overrides` are settings."""
    values: dict[str, Any] = {
        "pubsub_url": stack.pubsub_url,
        "redis_url": stack.redis_url,
        "secret_key": SECRET,
        "rate_limits": "default=1000000/minute;auth=1000000/minute",
        "rate_limit_ip": "1000000/minute",
        **overrides,
    }
    settings = settings_for(stack.database_url, tmp_path, **values)
    runtime = await assemble(settings, ["identity", "chat"])
    app = runtime.create_app()
    async with (
        uvicorn_serving(
            app,
            ws_ping_interval=settings.chat_ping_interval,
            ws_ping_timeout=settings.chat_ping_timeout,
        ) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WITHIN) as http,
    ):
        chat = ChatServer(runtime, port, http)
        try:
            yield chat
        finally:
            for socket in chat.sockets:
                await socket.close()
