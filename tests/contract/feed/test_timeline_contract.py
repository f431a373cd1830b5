"""The TimelineStore contract, on the in-process adapter and on the real Redis under a fresh
prefix: what the feed's reads and fan-out rely on from the cached timelines.

Post ids come from the one id function (UUIDv7), so an id made later sorts above every id made
before it; lists are newest first and `before` means ids strictly below it. Every test ends
by dropping what it made and checking that nothing is left (on Redis: no key under the prefix).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable

import pytest
import redis
import redis.asyncio as aioredis

from support.services import REDIS_URL, RUN_ID, require
from townhall.feed.adapters.memory import MemoryTimelines
from townhall.feed.adapters.redis import RedisTimelines
from townhall.feed.ports import TimelineStore
from townhall.platform.ids import new_id_str

pytestmark = pytest.mark.timeout(120)

_counter = itertools.count()


def new_ids(count: int) -> list[str]:
    """`count` post ids, oldest first (each made after the one before)."""
    return [new_id_str() for _ in range(count)]


def newest_first(ids: Iterable[str]) -> list[str]:
    return sorted(ids, reverse=True)


async def keys_under(prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    finally:
        await client.aclose()


class Stores:
    """Opens stores of one kind; on Redis, all under one prefix of this run and test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"t{RUN_ID}feed{next(_counter)}" if kind == "redis" else None
        self.opened: list[TimelineStore] = []

    async def open(self, length: int = 800) -> TimelineStore:
        store: TimelineStore
        if self.prefix is None:
            store = MemoryTimelines(length=length)
        else:
            store = await RedisTimelines.open(REDIS_URL, prefix=self.prefix, length=length)
        self.opened.append(store)
        return store

    async def close(self) -> None:
        """Closes what was opened and deletes whatever a test left under the prefix."""
        for store in self.opened:
            await store.close()
        if self.prefix is None:
            return
        client = redis.Redis.from_url(REDIS_URL)
        try:
            left = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
            if left:
                client.unlink(*left)
        finally:
            client.close()


@pytest.fixture(params=["memory", "redis"])
async def stores(request) -> AsyncIterator[Stores]:
    if request.param == "redis":
        require("Redis", "127.0.0.1", 6379)
    stores = Stores(request.param)
    yield stores
    await stores.close()


@pytest.fixture
async def redis_stores() -> AsyncIterator[Stores]:
    require("Redis", "127.0.0.1", 6379)
    stores = Stores("redis")
    yield stores
    await stores.close()


async def assert_nothing_left(
    stores: Stores,
    store: TimelineStore,
    owners: Iterable[str] = (),
    authors: dict[str, Iterable[str]] | None = None,
) -> None:
    """Drops the owners' timelines and removes the authors' posts, then checks the store
    holds nothing of them (and, on Redis, that no key is left under the prefix)."""
    owners = list(owners)
    for owner in owners:
        await store.drop(owner)
    for author, post_ids in (authors or {}).items():
        for post_id in post_ids:
            await store.remove_author_post(author, post_id)
    for owner in owners:
        assert await store.page(owner, None, 10) is None
        assert await store.size(owner) is None
    if authors:
        assert await store.author_pages(list(authors), None, 10) == {a: [] for a in authors}
    prefix = stores.prefix
    if prefix is not None:
        assert await keys_under(prefix) == []


# Cached or not


async def test_a_timeline_never_built_is_not_cached_and_an_empty_rebuild_is(stores):
    store = await stores.open()
    assert await store.page("ann", None, 20) is None
    assert await store.size("ann") is None
    assert await store.page("ann", new_id_str(), 20) is None

    await store.replace("ann", [])
    assert await store.page("ann", None, 20) == []  # cached, and empty: not a rebuild again
    assert await store.size("ann") == 0
    assert await store.page("bob", None, 20) is None  # another reader is still not built

    await store.drop("ann")
    assert await store.page("ann", None, 20) is None
    await assert_nothing_left(stores, store, ["ann", "bob"])


async def test_a_push_to_a_timeline_not_cached_is_ignored_and_a_rebuild_finds_it(
    stores,
):
    store = await stores.open()
    await store.replace("cached", [])
    first, second = new_ids(2)
    await store.push([("ghost", first), ("cached", first), ("ghost", second)])
    assert await store.page("ghost", None, 20) is None  # its first read rebuilds it
    assert await store.size("ghost") is None
    assert await store.page("cached", None, 20) == [first]

    await store.push([])  # nothing to do is fine
    await store.drop("cached")
    await store.push([("cached", second)])  # dropped: not cached any more
    assert await store.page("cached", None, 20) is None
    await assert_nothing_left(stores, store, ["ghost", "cached"])


# Reading


async def test_a_rebuild_is_read_back_newest_first_without_duplicates(stores):
    store = await stores.open()
    ids = new_ids(30)
    shuffled = ids[1::2] + ids[::2] + ids[:5]  # any order, some twice
    await store.replace("ann", shuffled)
    assert await store.size("ann") == 30
    assert await store.page("ann", None, 100) == newest_first(ids)
    assert await store.page("ann", None, 7) == newest_first(ids)[:7]
    assert await store.page("ann", None, 0) == []
    # Below a position: strictly below, whether or not the position is in the timeline.
    assert await store.page("ann", ids[10], 4) == newest_first(ids[6:10])
    assert await store.page("ann", ids[0], 4) == []
    assert await store.page("ann", new_id_str(), 3) == newest_first(ids)[:3]
    assert await store.page("ann", "", 3) == []  # nothing is below the lowest position

    # A rebuild replaces what was there.
    others = new_ids(3)
    await store.replace("ann", others)
    assert await store.page("ann", None, 100) == newest_first(others)
    await assert_nothing_left(stores, store, ["ann"])


async def test_paging_by_position_never_repeats_or_skips_while_newer_posts_arrive(
    stores,
):
    store = await stores.open()
    ids = new_ids(97)
    await store.replace("ann", ids[:40])
    await store.push([("ann", post_id) for post_id in ids[40:]])
    first_read = newest_first(ids)

    shown: list[str] = []
    arrived: list[str] = []
    before: str | None = None
    for limit in itertools.cycle([1, 7, 10, 3]):
        page = await store.page("ann", before, limit)
        assert page is not None
        if not page:
            break
        assert len(page) <= limit
        shown += page
        before = page[-1]
        # New posts land above the first page while the reader scrolls down.
        newer = new_ids(3)
        arrived += newer
        await store.push([("ann", post_id) for post_id in newer])
    assert shown == first_read  # every one once, in order
    assert await store.page("ann", None, 1000) == newest_first(ids + arrived)
    await assert_nothing_left(stores, store, ["ann"])


async def test_a_timeline_keeps_the_newest_length_entries(stores):
    store = await stores.open(length=5)
    assert store.length == 5
    ids = new_ids(12)
    await store.replace("ann", ids[:8])  # a rebuild is kept to length too
    assert await store.page("ann", None, 100) == newest_first(ids[3:8])

    await store.push([("ann", post_id) for post_id in ids[8:11]])
    assert await store.size("ann") == 5
    assert await store.page("ann", None, 100) == newest_first(ids[6:11])

    # An entry older than everything kept goes at once; one already there is not doubled.
    await store.push([("ann", ids[0]), ("ann", ids[10]), ("ann", ids[11]), ("ann", ids[11])])
    assert await store.page("ann", None, 100) == newest_first(ids[7:12])
    assert await store.size("ann") == 5
    await assert_nothing_left(stores, store, ["ann"])


async def test_remove_takes_out_those_ids_and_leaves_the_timeline_cached(stores):
    store = await stores.open()
    ids = new_ids(6)
    await store.replace("ann", ids)
    await store.remove("ann", {ids[1], ids[4], new_id_str()})  # one never there
    assert await store.page("ann", None, 10) == newest_first([ids[0], ids[2], ids[3], ids[5]])
    await store.remove("ann", [])
    assert await store.size("ann") == 4

    await store.remove("ann", ids)
    assert await store.page("ann", None, 10) == []  # empty, still cached
    assert await store.size("ann") == 0

    await store.remove("ghost", ids)  # a timeline not cached stays not cached
    assert await store.page("ghost", None, 10) is None
    await assert_nothing_left(stores, store, ["ann", "ghost"])


async def test_drop_forgets_one_timeline_only(stores):
    store = await stores.open()
    ids = new_ids(4)
    await store.replace("ann", ids)
    await store.replace("bob", ids[:2])
    await store.drop("ann")
    await store.drop("ann")  # twice is fine
    await store.drop("never-built")
    assert await store.page("ann", None, 10) is None
    assert await store.size("ann") is None
    assert await store.page("bob", None, 10) == newest_first(ids[:2])
    await assert_nothing_left(stores, store, ["ann", "bob"])


# Authors' recent posts (the celebrities' posts merged in at read time)


async def test_author_pages_answer_for_several_authors_at_once(stores):
    store = await stores.open(length=6)
    posts: dict[str, list[str]] = {"cel": [], "star": [], "quiet": []}
    for n, post_id in enumerate(new_ids(20)):
        author = "cel" if n % 3 else "star"
        posts[author].append(post_id)
        await store.push_author(author, post_id)
    await store.push_author("star", posts["star"][-1])  # again: not doubled

    asked = ["cel", "quiet", "star", "nobody"]
    pages = await store.author_pages(asked, None, 4)
    assert pages == {
        "cel": newest_first(posts["cel"])[:4],
        "quiet": [],
        "star": newest_first(posts["star"])[:4],
        "nobody": [],
    }
    # Each is kept to the newest `length`.
    pages = await store.author_pages(asked, None, 100)
    assert pages["cel"] == newest_first(posts["cel"])[:6]
    assert pages["star"] == newest_first(posts["star"])[:6]

    # Below a position, for every author alike.
    before = posts["star"][-2]
    pages = await store.author_pages(["cel", "star"], before, 3)
    assert pages == {
        "cel": [p for p in newest_first(posts["cel"]) if p < before][:3],
        "star": [p for p in newest_first(posts["star"]) if p < before][:3],
    }
    assert await store.author_pages(["cel"], "", 3) == {"cel": []}
    assert await store.author_pages([], None, 10) == {}

    # Home timelines and authors' posts are apart.
    assert await store.page("cel", None, 10) is None

    kept = {author: newest_first(ids)[:6] for author, ids in posts.items()}
    await assert_nothing_left(stores, store, [], {**kept, "nobody": []})


async def test_remove_author_post_takes_out_one_post(stores):
    store = await stores.open()
    ids = new_ids(3)
    for post_id in ids:
        await store.push_author("cel", post_id)
    await store.remove_author_post("cel", ids[1])
    await store.remove_author_post("cel", ids[1])  # twice is fine
    await store.remove_author_post("nobody", ids[0])
    assert await store.author_pages(["cel", "nobody"], None, 10) == {
        "cel": [ids[2], ids[0]],
        "nobody": [],
    }
    await assert_nothing_left(stores, store, [], {"cel": [ids[0], ids[2]]})


# Fan-out in bulk


async def test_a_push_of_ten_thousand_entries_to_a_thousand_timelines(stores):
    store = await stores.open()
    owners = [f"reader-{n}" for n in range(1000)]
    for owner in owners[:900]:
        await store.replace(owner, [])  # the last 100 are not cached
    ids = new_ids(10)
    entries = [(owner, post_id) for post_id in ids for owner in owners]

    started = time.perf_counter()
    await store.push(entries)
    took = time.perf_counter() - started
    print(
        f"\n[{stores.kind}] push of {len(entries)} entries across {len(owners)} timelines "
        f"(900 cached): {took * 1000:.1f} ms, {len(entries) / took:,.0f} entries/s"
    )

    for owner in owners[:900]:
        assert await store.page(owner, None, 20) == newest_first(ids)
    for owner in owners[900:]:
        assert await store.page(owner, None, 20) is None
    await assert_nothing_left(stores, store, owners)


# Both adapters answer alike


async def apply(store: TimelineStore, op: tuple) -> object:
    name, *args = op
    return await getattr(store, name)(*args)


def random_ops(rng: random.Random, ids: list[str], count: int) -> list[tuple]:
    owners = ["ann", "bob", "cat"]
    authors = ["cel", "star", "quiet"]

    def some_ids() -> list[str]:
        return rng.sample(ids, rng.randint(0, 6))

    def position() -> str | None:
        return rng.choice([None, None, "", *ids])

    makers: list[Callable[[], tuple]] = [
        lambda: ("push", [(rng.choice(owners), rng.choice(ids)) for _ in range(rng.randint(0, 8))]),
        lambda: ("page", rng.choice(owners), position(), rng.randint(0, 6)),
        lambda: ("size", rng.choice(owners)),
        lambda: ("replace", rng.choice(owners), some_ids()),
        lambda: ("remove", rng.choice(owners), some_ids()),
        lambda: ("drop", rng.choice(owners)),
        lambda: ("push_author", rng.choice(authors), rng.choice(ids)),
        lambda: (
            "author_pages",
            rng.sample(authors, rng.randint(0, 3)),
            position(),
            rng.randint(0, 6),
        ),
        lambda: ("remove_author_post", rng.choice(authors), rng.choice(ids)),
    ]
    return [rng.choice(makers)() for _ in range(count)]


async def test_redis_answers_every_sequence_of_calls_as_memory_does(redis_stores):
    stores = redis_stores
    ids = new_ids(12)
    for seed in range(150):
        rng = random.Random(seed)
        memory = MemoryTimelines(length=4)
        store = await stores.open(length=4)
        for step, op in enumerate(random_ops(rng, ids, 40)):
            expected = await apply(memory, op)
            assert await apply(store, op) == expected, f"seed {seed}, step {step}: {op}"
        authors = {a: ids for a in ("cel", "star", "quiet")}
        await assert_nothing_left(stores, store, ["ann", "bob", "cat"], authors)
        await store.close()
