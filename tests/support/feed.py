"""Helpers for the feed's integration tests: the app (identity + feed) on a stack, users who
post, follow and read their feed over HTTP as a client does, and looks at the durable feed
store (`feed_timeline`) to tell what the fan-out group did.

Stacks (`FEED_STACKS`): the embedded defaults (SQLite, in-process bus and timelines), and
PostgreSQL with RabbitMQ and Redis timelines (`TOWNHALL_REDIS_URL`), on per-run prefixes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from support.app import SignedUp, settings_for, sign_up
from support.databases import migrated_app_databases
from support.notifications import bus_url, eventually
from support.process import free_port
from support.services import (
    REDIS_URL,
    RUN_ID,
    port_open,
    require,
)
from townhall.bootstrap import Runtime, assemble
from townhall.feed.adapters.tables import timeline, users
from townhall.feed.workers import FANOUT_GROUP

FEED_STACKS = ("sqlite+memory", "postgresql+rabbitmq+redis")
# Out of the way of a test's stream of requests.
NO_LIMITS = {"rate_limits": "default=1000000/minute;auth=100000/minute"}
NO_IP_LIMIT = "1000000/minute"
WITHIN = 20.0  # seconds the fan-out group may take before a test fails


@dataclass(frozen=True)
class FeedStack:
    name: str
    database_url: str
    bus_url: str
    pubsub_url: str
    redis_url: str | None


@pytest.fixture(scope="session")
def feed_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One migrated database of each kind for this worker's whole run: the feed's tests share
    it, each with users, prefixes and queues of its own."""
    yield from migrated_app_databases(tmp_path_factory.mktemp("feed"), "feed")


def feed_stack(name: str, databases: dict[str, str], *, redis_url: str | None = None) -> FeedStack:
    """The stack `name` on fresh bus and pub/sub prefixes; `redis_url` (a Redis of the
    test's own) holds the timelines instead of the shared one."""
    if name == "sqlite+memory":
        return FeedStack(name, databases["sqlite"], bus_url("memory", "feed"), "memory://", None)
    require("PostgreSQL", "127.0.0.1", 5432)
    require("Redis", "127.0.0.1", 6379)
    require("RabbitMQ", "127.0.0.1", 5672)
    prefix = f"t{RUN_ID}feed{uuid.uuid4().hex[:6]}"
    return FeedStack(
        name,
        databases["postgresql"],
        bus_url("rabbitmq", "feed"),
        f"{REDIS_URL}?prefix={prefix}",
        redis_url or REDIS_URL,
    )


@pytest.fixture(params=FEED_STACKS)
def stack(request: pytest.FixtureRequest, feed_databases: dict[str, str]) -> FeedStack:
    """The test runs once on each stack of `FEED_STACKS`."""
    return feed_stack(request.param, feed_databases)


FeedUser = SignedUp


class FeedApp:
    """The app as its users see it (`client`), and its feed store as a test looks at it."""

    def __init__(self, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.client = client

    async def user(self, label: str = "u") -> FeedUser:
        return await sign_up(self.client, label)

    async def users(self, count: int, label: str = "u") -> list[FeedUser]:
        return list(await asyncio.gather(*(self.user(label) for _ in range(count))))

    async def post(self, author: FeedUser, text: str = "hello") -> str:
        made = await self.client.post("/api/v1/posts", json={"text": text}, headers=author.headers)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    async def follow(self, follower: FeedUser, author: FeedUser) -> None:
        done = await self.client.put(f"/api/v1/users/{author.id}/follow", headers=follower.headers)
        assert done.status_code == 204, done.text

    async def unfollow(self, follower: FeedUser, author: FeedUser) -> None:
        done = await self.client.delete(
            f"/api/v1/users/{author.id}/follow", headers=follower.headers
        )
        assert done.status_code == 204, done.text

    async def delete(self, author: FeedUser, post_id: str) -> None:
        done = await self.client.delete(f"/api/v1/posts/{post_id}", headers=author.headers)
        assert done.status_code == 204, done.text

    async def page(
        self, reader: FeedUser, cursor: str | None = None, limit: int = 20, mode: str = "latest"
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "mode": mode}
        if cursor is not None:
            params["cursor"] = cursor
        got = await self.client.get("/api/v1/feed", params=params, headers=reader.headers)
        assert got.status_code == 200, got.text
        return dict(got.json())

    async def feed(self, reader: FeedUser, limit: int = 20, mode: str = "latest") -> list[str]:
        """Every post id of the reader's feed, page after page, as a client scrolls."""
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.page(reader, cursor, limit, mode)
            ids += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids
            assert len(ids) < 10_000, "the feed does not end"

    async def feed_becomes(
        self, reader: FeedUser, expected: Sequence[str], limit: int = 20
    ) -> list[str]:
        """Wait until the reader's whole feed is `expected` (newest first)."""

        async def check() -> bool:
            return await self.feed(reader, limit) == list(expected)

        try:
            await eventually(check, within=WITHIN)
        except AssertionError:
            raise AssertionError(
                f"feed {await self.feed(reader, limit)} never became {list(expected)}"
            ) from None
        return list(expected)

    # The durable feed store, as the fan-out group leaves it --------------------------------

    async def stored(self, owner: FeedUser) -> set[str]:
        """The post ids in the owner's durable timeline (`feed_timeline`)."""
        query = sa.select(timeline.c.post_id).where(timeline.c.owner == owner.id)
        async with self.runtime.platform.database.connect() as conn:
            return {row[0] for row in (await conn.execute(query)).all()}

    async def holders(self, post_id: str) -> set[str]:
        """Who has this post in their durable timeline."""
        query = sa.select(timeline.c.owner).where(timeline.c.post_id == post_id)
        async with self.runtime.platform.database.connect() as conn:
            return {row[0] for row in (await conn.execute(query)).all()}

    async def fanned_out(self, posts: str | Sequence[str], *owners: FeedUser) -> None:
        """Wait until the fan-out group put `posts` (one id or several) in these owners'
        durable timelines, and their feeds show them (the cache is written after the store)."""
        wanted = {posts} if isinstance(posts, str) else set(posts)

        async def check() -> bool:
            for owner in owners:
                if not wanted <= await self.stored(owner):
                    return False
            for owner in owners:
                if not wanted <= set(await self.feed(owner, limit=100)):
                    return False
            return True

        await eventually(check, within=WITHIN)

    async def cleaned(self, post_id: str) -> None:
        """Wait until no durable timeline holds `post_id`."""

        async def check() -> bool:
            return not await self.holders(post_id)

        await eventually(check, within=WITHIN)

    async def set_last_read(self, reader: FeedUser, when: datetime) -> None:
        statement = users.update().where(users.c.user_id == reader.id).values(last_read_at=when)
        async with self.runtime.platform.database.transaction() as conn:
            changed = await conn.execute(statement)
        assert changed.rowcount == 1, "the reader has no feed_users row (never read?)"


@asynccontextmanager
async def feed_app(
    stack: FeedStack, tmp_path: Any, *, fanout: bool = True, **settings: Any
) -> AsyncIterator[FeedApp]:
    """identity + feed on `stack` (httpx over ASGI, the consumer groups in this process);
    without `fanout`, every group runs but `feed.fanout` (its queue exists: what is
    published meanwhile waits for it)."""
    configured = settings_for(
        stack.database_url,
        tmp_path,
        bus_url=stack.bus_url,
        pubsub_url=stack.pubsub_url,
        redis_url=stack.redis_url,
        rate_limit_ip=NO_IP_LIMIT,
        **{**NO_LIMITS, **settings},
    )
    runtime = await assemble(configured, ["identity", "feed"])
    app = runtime.create_app()
    groups = None
    if not fanout:
        groups = [spec.group for spec in runtime.consumers if spec.group != FANOUT_GROUP]
        await runtime.platform.bus.transport.ensure_group("feed", FANOUT_GROUP)  # type: ignore[attr-defined]
    await runtime.start(groups=groups)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://townhall") as client:
            yield FeedApp(runtime, client)
    finally:
        await runtime.stop()


class OwnRedis:
    """A redis-server of the test's own (its port, its directory, no persistence), which the
    test may stop and start again; never the shared one."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not come up"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def own_redis(directory: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
