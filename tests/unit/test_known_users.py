"""The edge's check that a token's user exists: identity is asked once per user per TTL."""

from datetime import timedelta

from townhall.platform.auth import KnownUsers
from townhall.platform.clock import FrozenClock


async def test_an_existing_user_is_asked_once_per_ttl_and_a_missing_one_every_time():
    asked: list[str] = []
    users = {"u1"}

    async def exists(user_id: str) -> bool:
        asked.append(user_id)
        return user_id in users

    clock = FrozenClock()
    known = KnownUsers(exists, clock, ttl=timedelta(seconds=60))
    assert [await known("u1") for _ in range(3)] == [True, True, True]
    assert [await known("ghost") for _ in range(2)] == [False, False]
    assert asked == ["u1", "ghost", "ghost"]

    users.clear()  # u1 deleted: refused once its cached answer expires
    clock.advance(seconds=59)
    assert await known("u1") is True
    clock.advance(seconds=1)
    assert await known("u1") is False
    assert asked == ["u1", "ghost", "ghost", "u1"]
