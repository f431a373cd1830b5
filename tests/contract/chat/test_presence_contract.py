"""The Presence contract, on the in-process adapter and on the real Redis under a fresh prefix.

TTLs are short and lapses are polled for, never slept on and then asserted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from support.services import REDIS_URL, RUN_ID, require
from townhall.chat.adapters import redis as redis_adapter
from townhall.chat.adapters.memory import MemoryPresence
from townhall.chat.adapters.redis import RedisPresence
from townhall.chat.ports import Presence

pytestmark = pytest.mark.timeout(60)

LONG = 60.0  # a TTL no test outlives
SHORT = 0.3
_counter = itertools.count()

Open = Callable[[], Awaitable[Presence]]


async def keys_under(prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    finally:
        await client.aclose()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A prefix of this run and test; whatever a test leaves under it is deleted after."""
    require("Redis", "127.0.0.1", 6379)
    prefix = f"t{RUN_ID}presence{next(_counter)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        left = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if left:
            client.unlink(*left)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
async def open_presence(request) -> AsyncIterator[Open]:
    """Opens presences of one store: on Redis, instances sharing a prefix, as gateways do."""
    opened: list[Presence] = []
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else None

    async def open_one() -> Presence:
        presence: Presence
        if prefix is None:
            presence = MemoryPresence()
        else:
            presence = await RedisPresence.open(REDIS_URL, prefix=prefix)
        opened.append(presence)
        return presence

    yield open_one
    for presence in opened:
        await presence.close()


@pytest.fixture
async def presence(open_presence) -> Presence:
    return await open_presence()


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def lapsed(presence: Presence, *users: str) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return not await presence.online(users)

    return condition


async def test_first_connection_comes_online_a_second_does_not_and_the_last_goes_offline(
    presence,
):
    assert await presence.connect("ann", "c1", LONG) is True
    assert await presence.connect("ann", "c2", LONG) is False
    assert await presence.connect("ann", "c2", LONG) is False  # the same socket again
    assert await presence.online(["ann"]) == {"ann"}

    assert await presence.disconnect("ann", "c1") is False  # c2 keeps her online
    assert await presence.online(["ann"]) == {"ann"}
    assert await presence.disconnect("ann", "c2") is True
    assert await presence.online(["ann"]) == set()

    # Forgetting what is already forgotten tells nothing again.
    assert await presence.disconnect("ann", "c2") is False
    assert await presence.disconnect("nobody", "c9") is False
    assert await presence.expired() == []
    # And she can come back.
    assert await presence.connect("ann", "c3", LONG) is True


async def test_online_answers_for_many_users_at_once_including_ones_never_seen(
    presence, monkeypatch
):
    monkeypatch.setattr(redis_adapter, "ONLINE_BATCH", 7)  # Redis: several calls at once
    users = [f"user-{n}" for n in range(300)]
    for n, user in enumerate(users):
        if n % 3 == 0:
            await presence.connect(user, f"conn-{n}", LONG)
    await presence.connect("user-0", "second", LONG)
    await presence.disconnect("user-3", "conn-3")
    asked = [*users, "never-seen", "user-0"]  # duplicates and strangers are fine
    expected = {u for n, u in enumerate(users) if n % 3 == 0 and n != 3}
    assert await presence.online(asked) == expected
    assert await presence.online([]) == set()
    assert await presence.online(("never-seen",)) == set()


async def test_a_connection_not_refreshed_lapses_and_expired_tells_its_user_once(presence):
    await presence.connect("bob", "b1", SHORT)
    await presence.connect("bob", "b2", SHORT)
    await presence.connect("cat", "c1", LONG)
    await eventually(lapsed(presence, "bob"))
    assert await presence.online(["bob", "cat"]) == {"cat"}
    assert await presence.expired() == ["bob"]  # two lapsed connections, one offline
    assert await presence.expired() == []
    # Lapsed and collected: a late disconnect or refresh changes nothing.
    assert await presence.disconnect("bob", "b1") is False
    await presence.refresh([("bob", "b2")], LONG)
    assert await presence.online(["bob"]) == set()
    assert await presence.connect("bob", "b3", LONG) is True


async def test_refresh_keeps_connections_alive_past_their_ttl(presence, monkeypatch):
    monkeypatch.setattr(redis_adapter, "REFRESH_BATCH", 1)  # Redis: a call per connection
    ttl = 1.0
    await presence.connect("kept", "k1", ttl)
    await presence.connect("kept2", "k2", ttl)
    await presence.connect("dropped", "d1", ttl)
    lapsed_at = None
    while lapsed_at is None or time.monotonic() < lapsed_at + 0.5:
        await presence.refresh([("kept", "k1"), ("kept2", "k2")], ttl)
        online = await presence.online(["kept", "kept2", "dropped"])
        assert {"kept", "kept2"} <= online
        if lapsed_at is None and "dropped" not in online:
            lapsed_at = time.monotonic()  # the TTL has passed since the connects
        await asyncio.sleep(0.05)
    assert await presence.expired() == ["dropped"]
    assert await presence.online(["kept", "kept2"]) == {"kept", "kept2"}
    await presence.refresh([], ttl)


async def test_refresh_does_not_bring_back_a_disconnected_connection(presence):
    await presence.connect("dan", "d1", LONG)
    await presence.connect("dan", "d2", LONG)
    await presence.disconnect("dan", "d1")
    await presence.refresh([("dan", "d1"), ("dan", "d2"), ("eve", "e1")], LONG)
    assert await presence.online(["dan", "eve"]) == {"dan"}
    assert await presence.disconnect("dan", "d2") is True
    assert await presence.online(["dan"]) == set()


async def test_disconnecting_a_lapsed_connection_tells_offline_once_between_it_and_expired(
    presence,
):
    await presence.connect("fay", "f1", SHORT)
    await presence.connect("fay", "f2", SHORT)
    await eventually(lapsed(presence, "fay"))
    # Not collected yet: the disconnect is the one that tells it, expired() does not again.
    assert await presence.disconnect("fay", "f1") is True
    assert await presence.expired() == []
    assert await presence.disconnect("fay", "f2") is False


async def test_connect_after_a_lapse_comes_online_and_the_lapse_is_not_told_later(presence):
    await presence.connect("gus", "g1", SHORT)
    await eventually(lapsed(presence, "gus"))
    assert await presence.connect("gus", "g2", LONG) is True
    assert await presence.expired() == []
    assert await presence.online(["gus"]) == {"gus"}


async def test_bad_arguments_are_refused_and_a_closed_presence_refuses_calls(open_presence):
    presence = await open_presence()
    with pytest.raises(ValueError, match="user id"):
        await presence.connect("has\x1fseparator", "c", LONG)
    with pytest.raises(ValueError, match="user id"):
        await presence.connect("", "c", LONG)
    with pytest.raises(ValueError, match="connection id"):
        await presence.connect("u", "", LONG)
    with pytest.raises(ValueError, match="ttl"):
        await presence.connect("u", "c", 0)
    with pytest.raises(ValueError, match="ttl"):
        await presence.refresh([("u", "c")], -1)
    with pytest.raises(ValueError, match="user id"):
        await presence.refresh([("u", "c"), ("bad\x1f", "c")], LONG)
    with pytest.raises(ValueError, match="connection id"):
        await presence.disconnect("u", "")
    await presence.ping()
    await presence.close()
    for call in (
        presence.ping(),
        presence.connect("u", "c", LONG),
        presence.online(["u"]),
        presence.expired(),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            await call
    await presence.close()  # twice is fine


# Redis only: what gateways sharing one store rely on.


@pytest.fixture
async def gateways(redis_prefix) -> AsyncIterator[tuple[RedisPresence, RedisPresence]]:
    one = await RedisPresence.open(REDIS_URL, prefix=redis_prefix)
    two = await RedisPresence.open(REDIS_URL, prefix=redis_prefix)
    yield one, two
    await one.close()
    await two.close()


async def test_gateways_sharing_a_prefix_see_each_others_connections(gateways, redis_prefix):
    one, two = gateways
    assert await one.connect("hal", "on-one", LONG) is True
    assert await two.connect("hal", "on-two", LONG) is False
    assert await two.online(["hal"]) == {"hal"}
    assert await one.disconnect("hal", "on-one") is False
    assert await two.disconnect("hal", "on-two") is True
    assert await one.online(["hal"]) == set()

    other = await RedisPresence.open(REDIS_URL, prefix=redis_prefix + "-other")
    try:
        await one.connect("ida", "i1", LONG)
        assert await other.online(["ida"]) == set()  # another prefix is another store
    finally:
        await other.close()
    await one.disconnect("ida", "i1")
    assert await keys_under(redis_prefix) == []  # everyone gone: nothing left behind


async def test_expired_called_at_once_from_two_gateways_tells_each_user_exactly_once(
    gateways, redis_prefix, monkeypatch
):
    one, two = gateways
    # Small batches, so a user's lapsed connections fall in different script calls too.
    monkeypatch.setattr(redis_adapter, "EXPIRED_BATCH", 7)
    users = [f"user-{n}" for n in range(100)]
    for n, user in enumerate(users):
        await one.connect(user, "a", SHORT)
        if n % 2:
            await two.connect(user, "b", SHORT)
        if n % 5 == 0:
            await two.connect(user, "c", SHORT)
    await one.connect("stays", "s", LONG)
    await eventually(lapsed(one, *users))

    calls = [gateway.expired() for _ in range(4) for gateway in (one, two)]
    results = await asyncio.gather(*calls)
    told = [user for result in results for user in result]
    assert sorted(told) == sorted(users)
    assert await one.expired() == [] and await two.expired() == []
    assert await two.online(["stays", *users]) == {"stays"}

    await two.disconnect("stays", "s")
    assert await keys_under(redis_prefix) == []


async def test_user_keys_expire_by_themselves_when_no_gateway_collects_them(gateways, redis_prefix):
    one, _ = gateways
    await one.connect("jo", "j1", SHORT)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        ttl_ms = await client.pttl(one.user_key("jo"))
        assert 0 < ttl_ms <= 2 * SHORT * 1000  # its latest expiry and one TTL of grace

        async def user_key_gone() -> bool:
            return not await client.exists(one.user_key("jo"))

        await eventually(user_key_gone)
    finally:
        await client.aclose()
    # The deadline is still there: the offline is told once, by whoever collects it.
    assert await one.expired() == ["jo"]
    assert await keys_under(redis_prefix) == []
