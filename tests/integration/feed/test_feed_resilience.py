"""The feed's consistency choice (PA/EL) as its users see it: with the fan-out group stopped,
posting and reading still answer and the feed catches up once the group runs; with Redis
stopped mid-test, feeds answer from SQL and are right, /readyz names Redis, and once Redis is
back (empty) each feed is rebuilt and right."""

from __future__ import annotations

import pytest
from redis import asyncio as aioredis

from support.feed import FeedApp, feed_app, feed_stack, own_redis
from support.feed import feed_databases as feed_databases  # the fixtures
from support.feed import stack as stack
from support.notifications import eventually
from townhall.feed.workers import FANOUT_GROUP
from townhall.platform.pubsub import PubSubOptions

pytestmark = pytest.mark.timeout(90)


async def test_with_the_fanout_group_stopped_posting_and_reading_answer_then_catch_up(
    stack, tmp_path
):
    async with feed_app(stack, tmp_path, fanout=False) as app:
        reader, author = await app.users(2)
        await app.follow(reader, author)
        assert await app.feed(reader) == []
        posts = [await app.post(author, f"p{n}") for n in range(3)]
        mine = await app.post(reader, "mine")
        # Nothing was fanned out, and every read still answers: the author and the reader
        # see their own posts at once, the reader not yet the author's.
        assert await app.holders(posts[0]) == set()
        assert await app.feed(author) == list(reversed(posts))
        assert await app.feed(reader) == [mine]
        assert (await app.page(reader, mode="ranked"))["items"][0]["id"] == mine

        await app.runtime.start_consumers([FANOUT_GROUP])
        await app.feed_becomes(reader, [mine, *reversed(posts)])
        await app.fanned_out(posts[-1], reader, author)


async def readiness(app: FeedApp) -> tuple[int, dict[str, str]]:
    answer = await app.client.get("/readyz")
    return answer.status_code, dict(answer.json().get("checks", {}))


async def test_with_redis_stopped_feeds_answer_from_sql_and_are_rebuilt_when_it_returns(
    feed_databases, tmp_path
):
    with own_redis(tmp_path / "redis") as redis_server:
        stack = feed_stack("postgresql+rabbitmq+redis", feed_databases, redis_url=redis_server.url)
        async with feed_app(stack, tmp_path, feed_timeline_length=10) as app:
            reader, author, other = await app.users(3)
            await app.follow(reader, author)
            await app.follow(reader, other)
            await app.page(reader)
            before = [await app.post(author, f"before {n}") for n in range(4)]
            before += [await app.post(other, f"other {n}") for n in range(4)]
            await app.fanned_out(before, reader)
            expected = sorted(before, reverse=True)
            assert await app.feed(reader, limit=3) == expected
            assert await readiness(app) == (200, {**(await readiness(app))[1], "redis": "ok"})

            redis_server.stop()
            # Reads answer from the feed store, page by page, and are right.
            assert await app.feed(reader, limit=3) == expected
            assert await app.feed(reader, limit=100) == expected
            status, checks = await readiness(app)
            assert status == 503
            assert checks["redis"].startswith("unreachable")
            assert {name for name, state in checks.items() if state != "ok"} == {"redis"}
            # Posting answers; the fan-out group's feed store write lands, the cache's fails.
            during = await app.post(author, "while Redis is down")
            await app.fanned_out(during, reader)
            expected = [during, *expected]
            assert await app.feed(reader, limit=4) == expected
            assert await app.feed(author) == [during, *sorted(before[:4], reverse=True)]
            # A delete leaves the feed at once.
            await app.delete(other, before[5])
            expected.remove(before[5])
            assert await app.feed(reader, limit=3) == expected

            redis_server.start()  # empty: every cached timeline is gone

            async def ready() -> bool:
                return (await readiness(app))[0] == 200

            await eventually(ready, within=15)
            assert await app.feed(reader, limit=3) == expected
            # The reader's timeline was rebuilt in Redis (at most its newest 10: the cached length).
            prefix = PubSubOptions.from_url(stack.pubsub_url).prefix
            client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
            try:
                # Past the empty member that marks the timeline built (adapters/redis.py).
                cached = await client.zrange(f"{prefix}:feed:tl:{reader.id}", 1, -1)
            finally:
                await client.aclose()
            assert sorted(cached, reverse=True) == expected[:10]
            # And fan-out reaches it again.
            after = await app.post(other, "Redis is back")
            await app.feed_becomes(reader, [after, *expected], limit=3)
            others = [p for p in before[4:] if p != before[5]]
            assert await app.feed(other) == [after, *sorted(others, reverse=True)]
