"""The TimelineStore contract, on the in-process adapter and on the real Redis under a fresh
prefix (whatever a test leaves under it is deleted after)."""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from support.services import REDIS_URL, RUN_ID, require
from townhall.feed.adapters.memory import MemoryTimelines
from townhall.feed.adapters.redis import RedisTimelines
from townhall.feed.ports import TimelineStore

pytestmark = pytest.mark.timeout(120)

LENGTH = 50
_counter = itertools.count()
_ms = itertools.count(1_800_000_000_000)


def new_ids(count: int) -> list[str]:
    """`count` UUIDv7 strings, ascending (oldest first), each a millisecond after the last."""
    ids = []
    for _ in range(count):
        value = (next(_ms) << 80) | (0x7 << 76) | (0b10 << 62) | random.getrandbits(62)
        ids.append(str(uuid.UUID(int=value)))
    return ids


def newest_first(ids: list[str]) -> list[str]:
    return sorted(ids, reverse=True)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"t{RUN_ID}timelines{next(_counter)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        left = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if left:
            client.unlink(*left)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
async def timelines(request) -> AsyncIterator[TimelineStore]:
    store: TimelineStore
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        store = await RedisTimelines.open(REDIS_URL, prefix=prefix, length=LENGTH)
    else:
        store = MemoryTimelines(LENGTH)
    yield store
    await store.close()


async def test_a_timeline_never_built_is_not_cached(timelines: TimelineStore) -> None:
    assert await timelines.page("ann", None, 10) is None
    assert await timelines.size("ann") is None


async def test_a_built_empty_timeline_is_cached_and_empty(timelines: TimelineStore) -> None:
    await timelines.replace("ann", [])
    assert await timelines.page("ann", None, 10) == []
    assert await timelines.size("ann") == 0


async def test_a_push_to_a_timeline_not_built_is_ignored(timelines: TimelineStore) -> None:
    (post,) = new_ids(1)
    await timelines.push([("ann", post)])
    assert await timelines.page("ann", None, 10) is None
    assert await timelines.size("ann") is None


async def test_a_push_reaches_only_the_cached_timelines(timelines: TimelineStore) -> None:
    older, post = new_ids(2)
    await timelines.replace("ann", [older])
    await timelines.replace("bob", [])
    await timelines.push([("ann", post), ("bob", post), ("cid", post)])
    assert await timelines.page("ann", None, 10) == [post, older]
    assert await timelines.page("bob", None, 10) == [post]
    assert await timelines.page("cid", None, 10) is None


async def test_a_rebuilt_timeline_pages_newest_first(timelines: TimelineStore) -> None:
    ids = new_ids(25)
    shuffled = ids[:]
    random.shuffle(shuffled)
    await timelines.replace("ann", shuffled + ids[:3])  # duplicates count once
    assert await timelines.size("ann") == 25
    first = await timelines.page("ann", None, 10)
    assert first == newest_first(ids)[:10]
    second = await timelines.page("ann", first[-1], 10)  # type: ignore[index]
    assert second == newest_first(ids)[10:20]
    third = await timelines.page("ann", second[-1], 10)  # type: ignore[index]
    assert third == newest_first(ids)[20:]
    assert await timelines.page("ann", third[-1], 10) == []  # type: ignore[index]


async def test_a_rebuild_replaces_what_was_there(timelines: TimelineStore) -> None:
    old = new_ids(5)
    new = new_ids(3)
    await timelines.replace("ann", old)
    await timelines.replace("ann", new)
    assert await timelines.page("ann", None, 10) == newest_first(new)


async def test_before_a_position_not_in_the_timeline_pages_strictly_below_it(
    timelines: TimelineStore,
) -> None:
    ids = new_ids(6)
    await timelines.replace("ann", ids[0:2] + ids[3:6])
    assert await timelines.page("ann", ids[2], 10) == [ids[1], ids[0]]
    assert await timelines.page("ann", ids[3], 1) == [ids[1]]
    assert await timelines.page("ann", ids[0], 10) == []


async def test_paging_down_never_repeats_or_skips_while_new_posts_arrive(
    timelines: TimelineStore,
) -> None:
    start = new_ids(40)
    await timelines.replace("ann", start)
    seen: list[str] = []
    before = None
    rng = random.Random(7)
    while True:
        page = await timelines.page("ann", before, rng.randint(1, 7))
        assert page is not None
        if not page:
            break
        seen += page
        before = page[-1]
        # new posts land above the first page, a few at a time, while the reader scrolls
        await timelines.push([("ann", post_id) for post_id in new_ids(rng.randint(0, 2))])
    assert seen == newest_first(start)[: len(seen)]
    # What the reader reached: everything of the start not pushed out by the newer posts.
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(start)


async def test_a_timeline_keeps_its_newest_length_entries(timelines: TimelineStore) -> None:
    ids = new_ids(LENGTH + 30)
    await timelines.replace("ann", ids[: LENGTH + 10])  # a rebuild beyond length is trimmed
    assert await timelines.size("ann") == LENGTH
    assert await timelines.page("ann", None, LENGTH + 50) == newest_first(ids[10 : LENGTH + 10])
    await timelines.push([("ann", post_id) for post_id in ids[LENGTH + 10 :]])
    assert await timelines.size("ann") == LENGTH
    assert await timelines.page("ann", None, LENGTH + 50) == newest_first(ids[30:])
    # a post older than everything kept goes straight out
    await timelines.push([("ann", ids[0])])
    assert await timelines.page("ann", None, LENGTH + 50) == newest_first(ids[30:])


async def test_a_push_of_an_id_already_there_keeps_one(timelines: TimelineStore) -> None:
    ids = new_ids(3)
    await timelines.replace("ann", ids)
    await timelines.push([("ann", ids[1]), ("ann", ids[1])])
    assert await timelines.page("ann", None, 10) == newest_first(ids)


async def test_removed_posts_leave_the_timeline(timelines: TimelineStore) -> None:
    ids = new_ids(4)
    await timelines.replace("ann", ids)
    await timelines.remove("ann", {ids[1], ids[3], new_ids(1)[0]})
    assert await timelines.page("ann", None, 10) == [ids[2], ids[0]]
    await timelines.remove("ann", [ids[0], ids[2]])
    assert await timelines.page("ann", None, 10) == []  # still cached, now empty
    assert await timelines.size("ann") == 0
    await timelines.remove("ann", [])
    await timelines.remove("bob", ids)  # not cached: nothing to do, and not built by it
    assert await timelines.page("bob", None, 10) is None


async def test_a_dropped_timeline_is_not_cached_and_pushes_pass_it_by(
    timelines: TimelineStore,
) -> None:
    ids = new_ids(3)
    await timelines.replace("ann", ids[:2])
    await timelines.replace("bob", ids[:1])
    await timelines.drop("ann")
    await timelines.drop("cid")  # never built: nothing to do
    assert await timelines.page("ann", None, 10) is None
    assert await timelines.size("ann") is None
    await timelines.push([("ann", ids[2]), ("bob", ids[2])])
    assert await timelines.page("ann", None, 10) is None
    assert await timelines.page("bob", None, 10) == [ids[2], ids[0]]
    await timelines.replace("ann", [])
    assert await timelines.page("ann", None, 10) == []


async def test_a_push_of_ten_thousand_entries_across_a_thousand_owners(
    timelines: TimelineStore,
) -> None:
    owners = [f"reader{n}" for n in range(1000)]
    for owner in owners[:900]:  # the last hundred were never built
        await timelines.replace(owner, [])
    posts = new_ids(10)
    entries = [(owner, post_id) for post_id in posts for owner in owners]
    started = time.perf_counter()
    await timelines.push(entries)
    elapsed = time.perf_counter() - started
    print(
        f"\n{type(timelines).__name__}: push of {len(entries)} entries "
        f"across {len(owners)} owners in {elapsed * 1000:.1f} ms"
    )
    for owner in random.sample(owners[:900], 20):
        assert await timelines.page(owner, None, 20) == newest_first(posts)
    for owner in owners[900:]:
        assert await timelines.page(owner, None, 20) is None


async def test_a_page_of_no_entries_is_empty(timelines: TimelineStore) -> None:
    await timelines.replace("ann", new_ids(3))
    assert await timelines.page("ann", None, 0) == []


async def test_a_timeline_redis_evicts_is_not_cached_and_pushes_pass_it_by(
    redis_prefix: str,
) -> None:
    """Eviction (maxmemory with an allkeys policy) takes a whole key: the timeline must then
    read as not cached, to be rebuilt, not as an empty or partial one."""
    store = await RedisTimelines.open(REDIS_URL, prefix=redis_prefix, length=LENGTH)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        ids = new_ids(3)
        await store.replace("ann", ids[:2])
        # the set that holds the entries goes (whatever else the adapter keeps may stay)
        evicted = [
            key
            for key in client.scan_iter(match=f"{redis_prefix}:*")
            if "ann" in key and client.type(key) == "zset"
        ]
        assert evicted
        client.delete(*evicted)
        assert await store.page("ann", None, 10) is None
        await store.push([("ann", ids[2])])
        assert await store.page("ann", None, 10) is None
        assert await store.size("ann") is None
    finally:
        client.close()
        await store.close()


async def test_the_store_answers_a_ping(timelines: TimelineStore) -> None:
    await timelines.ping()
