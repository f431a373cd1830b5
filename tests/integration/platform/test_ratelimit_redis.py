"""Rate limits kept in Redis are shared by every process of an installation."""

import pytest
from limits import parse

from support.services import REDIS_URL, RUN_ID, require
from townhall.platform.ratelimit import RateLimited, RateLimiter


@pytest.fixture(autouse=True)
def redis_up():
    require("Redis", "127.0.0.1", 6379)


async def test_two_limiters_on_one_redis_share_a_budget():
    groups = {"default": parse("5/minute"), "auth": parse("2/minute")}
    prefix = f"test-{RUN_ID}"
    first = RateLimiter(groups, parse("100/minute"), REDIS_URL, key_prefix=prefix)
    second = RateLimiter(groups, parse("100/minute"), REDIS_URL, key_prefix=prefix)
    await first.ping()
    await first.check("auth", "10.0.0.1", None)
    await second.check("auth", "10.0.0.1", None)
    with pytest.raises(RateLimited) as caught:
        await first.check("auth", "10.0.0.1", None)
    assert caught.value.retry_after >= 1
    # Another IP, and the default group, have budgets of their own.
    await second.check("auth", "10.0.0.2", None)
    await second.check("default", "10.0.0.1", "user-1")
    await first.storage.reset()


async def test_limits_fail_open_while_their_redis_cannot_be_reached():
    """The edge keeps answering when the limits' Redis is down (its `/readyz` says so): a
    request is let through, not answered 500."""
    from support.process import free_port

    groups = {"default": parse("1/minute")}
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RateLimiter(groups, parse("1/minute"), down, key_prefix=f"test-{RUN_ID}")
    with pytest.raises(ConnectionError):
        await limiter.ping()
    for _ in range(3):  # over the limit, had it been counted
        await limiter.check("default", "10.0.0.1", "user-1")
