"""Benchmark: the news feed (issue 23) on PostgreSQL + Redis, three strategies side by side.

    .venv/bin/python bench/feed.py [--quick] [--seconds 5] [--concurrency 32] [--profile]

Setup (not measured): a database of its own and Redis keys under a prefix of its own; a
synthetic graph (`bench/feed_graph.py`: 100,000 users, power-law follower counts, 5 accounts
with 50,000+ followers, about 600,000 posts; `--quick` a tenth) COPYed into the feed's tables.
Sampled readers (1,000; `--quick` 200) follow about 200 authors and two celebrities each, so
their feed has a page 20; their cached timelines and durable feed store rows are written
straight from the graph, as the fan-out would have left them.

Everything is called in process, built as `townhall.feed._install` builds it (FeedService,
Fanout, SQL stores on `Database`, `RedisTimelines`, timeline length 800), so the figures are
the feed's, not the HTTP edge's. The author profiles come from a dict (the identity lookup is
left out, the same for every strategy).

1. Feed reads (`FeedService.feed`, mode latest), first page of 50 and page 20 (cursor after
   950 posts, past the 800 entries of the cache), p50/p99 and reads/s, closed loop with
   `--concurrency` readers (one event loop) and with 1, for:
   - hybrid: as wired (threshold 10,000; `--quick` 1,000): cached timeline + the read-time
     merge of the followed celebrities' posts;
   - fan-out-on-read: the reader's following list, `SqlPosts.ids_by_authors` over them and
     the reader (the LATERAL query over the `(author, id)` index), `SqlPosts.visible`;
   - fan-out-on-write: threshold above every follower count, no author read at read time,
     every post in the timelines.
   - hybrid, folded (what-if, `bench/feed_lean.py`): the same answer with the hybrid read's
     round trips folded (one Redis pipeline, one connection, no transaction per read), to
     show how much of the hybrid read is round trips.
   Every strategy's pages are checked against the graph's truth for some readers, and the
   round trips of one read counted (SQL statements with BEGIN/COMMIT, Redis, checkouts).
2. Fan-out: `Fanout.post_created` for authors of 1,000 to `threshold` followers, every user
   cached: timeline inserts/s (each a feed_timeline row and a Redis sorted-set entry), one
   post at a time and 4 at once.
3. One celebrity post: time and Redis commands (server INFO commandstats deltas; the shared
   server's background rate is printed beside) under hybrid vs pure fan-out-on-write.
4. Post-to-visible: `create_post`, then the fan-out handler called directly (no bus: this is
   the fan-out's latency, not a broker's), while a follower's first page is polled until the
   post is on it; for a normal author and for a celebrity.

Prints tables; asserts nothing about time. The database and the Redis keys of the run's
prefix are removed at the end, also on errors and Ctrl-C. `--profile` runs py-spy on this
process during the concurrent hybrid first-page reads and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from redis import asyncio as aioredis
from sqlalchemy import event

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import townhall.feed  # noqa: E402
from feed_graph import Graph, build, load, load_timelines  # noqa: E402
from feed_lean import LeanHybrid  # noqa: E402
from townhall.feed.adapters.outbox import OutboxFeedEvents  # noqa: E402
from townhall.feed.adapters.redis import RedisTimelines  # noqa: E402
from townhall.feed.adapters.sql import (  # noqa: E402
    SqlActivity,
    SqlFeedStore,
    SqlFollows,
    SqlPosts,
    SqlScores,
)
from townhall.feed.domain import encode_cursor  # noqa: E402
from townhall.feed.events import PostCreated  # noqa: E402
from townhall.feed.service import FeedService, FeedSettings  # noqa: E402
from townhall.feed.workers import FOLLOWER_PAGE, Fanout  # noqa: E402
from townhall.platform.clock import SystemClock  # noqa: E402
from townhall.platform.db import Database  # noqa: E402
from townhall.platform.messaging import Envelope  # noqa: E402
from townhall.platform.migrations import migrate  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
MIGRATIONS = Path(townhall.feed.__file__).parent / "migrations"
LENGTH = 800  # TOWNHALL_FEED_TIMELINE_LENGTH's default
PAGE = 50
DEEP = 20  # the deep page's number
INACTIVE = timedelta(days=30)
NEVER = 10**9  # a threshold above every follower count: pure fan-out on write
REDIS_WRITES = ("zadd", "zremrangebyrank", "zrem", "set", "del")


# --- small helpers ----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}\n")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


class DictProfiles:
    def __init__(self, users: list[str]) -> None:
        self._names = {user: (f"user{n}", None) for n, user in enumerate(users)}

    async def profiles(self, user_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        return {u: self._names[u] for u in user_ids if u in self._names}


@dataclass
class Stack:
    """The feed as `townhall.feed._install` wires it, on one Database and one timeline store."""

    service: FeedService
    fanout: Fanout
    timelines: RedisTimelines


def wire(database: Database, timelines: RedisTimelines, threshold: int, graph: Graph) -> Stack:
    posts, follows, feed_store, activity = SqlPosts(), SqlFollows(), SqlFeedStore(), SqlActivity()
    clock = SystemClock()
    service = FeedService(
        database,
        posts,
        follows,
        feed_store,
        activity,
        SqlScores(),
        timelines,
        DictProfiles(graph.users),
        OutboxFeedEvents(),
        clock,
        FeedSettings(celebrity_threshold=threshold, inactive=INACTIVE),
    )
    fanout = Fanout(
        database,
        posts,
        follows,
        feed_store,
        activity,
        timelines,
        clock,
        celebrity_threshold=threshold,
        backfill=20,
        inactive=INACTIVE,
    )
    return Stack(service, fanout, timelines)


class FanoutOnRead:
    """The baseline: no timelines at all; every read is the followed authors' newest posts."""

    def __init__(self, database: Database, graph: Graph) -> None:
        self._db = database
        self._posts, self._follows = SqlPosts(), SqlFollows()
        self._profiles = DictProfiles(graph.users)

    async def feed(self, reader: str, before: str | None, limit: int) -> list[str]:
        async with self._db.connect() as tx:
            authors = [reader, *await self._follows.all_following(tx, reader)]
            found = await self._posts.ids_by_authors(tx, authors, before, limit)
            ids = [post_id for post_id, _ in found]
            visible = await self._posts.visible(tx, ids) if ids else {}
        ordered = [visible[i] for i in ids if i in visible]
        await self._profiles.profiles({p.author for p in ordered})
        return [p.id for p in ordered]


# --- redis --------------------------------------------------------------------------------------


async def command_stats(client: Any) -> dict[str, int]:
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def delete_prefix(client: Any, prefix: str) -> int:
    deleted = 0
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


async def mark_cached(timelines: RedisTimelines, owners: list[str]) -> None:
    """Every owner's timeline counts as cached (an empty one built), so a push writes it."""
    for start in range(0, len(owners), 10_000):
        pipe = timelines.client.pipeline(transaction=False)
        for owner in owners[start : start + 10_000]:
            pipe.set(timelines._marker(owner), 1)
        await pipe.execute()


# --- reads ----------------------------------------------------------------------------------


class Trips:
    """Round trips a read makes: SQL statements, BEGINs and COMMITs (SQLAlchemy events: each
    is one exchange with PostgreSQL over asyncpg), connection checkouts, Redis pipelines and
    commands (counted on the client)."""

    def __init__(self, database: Database, client: Any) -> None:
        self.counts = {"sql": 0, "checkouts": 0, "redis": 0}
        engine = database.engine.sync_engine

        def sql(*_: Any) -> None:
            self.counts["sql"] += 1

        def checkout(*_: Any) -> None:
            self.counts["checkouts"] += 1

        def boundary(conn: Any) -> None:
            # Reads run on AUTOCOMMIT connections: no BEGIN or COMMIT goes to the server.
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                self.counts["sql"] += 1

        event.listen(engine, "before_cursor_execute", sql)
        event.listen(engine, "begin", boundary)
        event.listen(engine, "commit", boundary)
        event.listen(engine.pool, "checkout", checkout)
        pipeline, execute = client.pipeline, client.execute_command

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            self.counts["redis"] += 1
            return pipeline(*args, **kwargs)

        async def counted_execute(*args: Any, **kwargs: Any) -> Any:
            self.counts["redis"] += 1
            return await execute(*args, **kwargs)

        client.pipeline = counted_pipeline
        client.execute_command = counted_execute

    async def per_read(self, read: Reader, jobs: list[tuple[str, str | None]]) -> str:
        before = dict(self.counts)
        for reader, cursor in jobs:
            await read(reader, cursor)
        n = len(jobs)
        spent = {k: (v - before[k]) / n for k, v in self.counts.items()}
        return f"{spent['sql']:g} / {spent['redis']:g} / {spent['checkouts']:g}"


Reader = Callable[[str, str | None], Awaitable[list[str]]]


async def closed_loop(
    read: Reader, jobs: list[tuple[str, str | None]], concurrency: int, seconds: float
) -> tuple[list[float], float]:
    """`concurrency` workers, each reading job after job (random readers) for `seconds`;
    latencies in ms, reads/s."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    rng = random.Random(concurrency)

    async def worker() -> None:
        while time.perf_counter() < stop:
            reader, before = jobs[rng.randrange(len(jobs))]
            started = time.perf_counter()
            await read(reader, before)
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, len(latencies) / (time.perf_counter() - began)


def reads_of_service(service: FeedService) -> Reader:
    async def read(reader: str, before: str | None) -> list[str]:
        page = await service.feed(reader, encode_cursor(before) if before else None, PAGE)
        return [item.post.id for item in page.items]

    return read


def reads_of_lean(lean: LeanHybrid) -> Reader:
    async def read(reader: str, before: str | None) -> list[str]:
        return await lean.feed(reader, encode_cursor(before) if before else None, PAGE)

    return read


def reads_of_baseline(baseline: FanoutOnRead) -> Reader:
    async def read(reader: str, before: str | None) -> list[str]:
        return await baseline.feed(reader, before, PAGE)

    return read


async def check(read: Reader, truth: dict[str, list[str]], count: int) -> str:
    """Pages 1 and 20 of `count` readers against the graph's truth."""
    wrong = 0
    for reader in list(truth)[:count]:
        whole = truth[reader]
        for before, expected in (
            (None, whole[:PAGE]),
            (whole[(DEEP - 1) * PAGE - 1], whole[(DEEP - 1) * PAGE : DEEP * PAGE]),
        ):
            if await read(reader, before) != expected:
                wrong += 1
    return "ok" if wrong == 0 else f"{wrong} of {2 * count} pages WRONG"


async def measure_reads(
    name: str,
    read: Reader,
    truth: dict[str, list[str]],
    args: Any,
    rows: list[list[str]],
    trips: Trips,
) -> None:
    verdict = await check(read, truth, 20)
    readers = list(truth)
    for page_name, jobs in (
        ("first page", [(r, None) for r in readers]),
        (f"page {DEEP}", [(r, truth[r][(DEEP - 1) * PAGE - 1]) for r in readers]),
    ):
        await closed_loop(read, jobs, args.concurrency, 1.0)  # warm the pool and plans
        exchanges = await trips.per_read(read, jobs[:20])
        gc.collect()
        one, _ = await closed_loop(read, jobs, 1, args.seconds / 2)
        many, rate = await closed_loop(read, jobs, args.concurrency, args.seconds)
        rows.append(
            [
                name,
                page_name,
                f"{percentile(one, 50):.2f}",
                f"{percentile(one, 99):.2f}",
                f"{percentile(many, 50):.2f}",
                f"{percentile(many, 99):.2f}",
                f"{rate:.0f}",
                exchanges,
                verdict,
            ]
        )
        print(f"  {name} {page_name}: p99 {percentile(many, 99):.1f} ms, {rate:.0f}/s", flush=True)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Names:
    database: str
    prefix: str


async def write_timelines(
    dsn: str,
    timelines: RedisTimelines,
    graph: Graph,
    readers: list[int],
    fanned: set[int] | None,
) -> dict[str, list[str]]:
    """What fan-out on write would have left for each reader: every post of the authors in
    `fanned` (None: all they follow) in the feed store, the newest LENGTH cached. Returns the
    whole feed of each reader (all followed authors), the truth the reads are checked on."""
    truth: dict[str, list[str]] = {}
    rows: list[tuple[str, str, str]] = []
    author_of = {p: graph.users[a] for a, ids in graph.posts.items() for p in ids}
    for reader in readers:
        owner = graph.users[reader]
        truth[owner] = graph.feed_of(reader)
        delivered = graph.feed_of(reader, fanned)
        rows += [(owner, p, author_of[p]) for p in delivered]
        await timelines.replace(owner, delivered[:LENGTH])
    await load_timelines(dsn, rows)
    return truth


async def run(args: Any, names: Names) -> None:
    scale = 10 if args.quick else 1
    users = 100_000 // scale
    threshold = 10_000 // scale
    started = time.perf_counter()
    graph = build(
        users=users,
        celebrities=5,
        celebrity_followers=50_000 // scale,
        readers=1000 // scale * (2 if args.quick else 1),
        reader_follows=200,
        posts_per_user=6,
    )
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f'CREATE DATABASE "{names.database}"')
    await admin.close()
    dsn = f"{PG}/{names.database}"
    database = Database(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{names.database}")
    await migrate(database, [MIGRATIONS])
    await load(dsn, graph, threshold)
    counts = sorted(graph.follower_count, reverse=True)
    read_time = {n for n, c in enumerate(graph.follower_count) if c > threshold}
    print(
        f"graph: {users:,} users, {graph.follow_count:,} follows, {graph.post_count:,} posts; "
        f"followers: max {counts[0]:,}, top 10 {[f'{c:,}' for c in counts[:10]]}, "
        f"median {counts[len(counts) // 2]}; {len(read_time)} above the threshold "
        f"{threshold:,}; loaded in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    print(f"load average (1, 5, 15 min) {os.getloadavg()} on {os.cpu_count()} CPUs", flush=True)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    hybrid_tl = RedisTimelines(client, prefix=f"{names.prefix}:hybrid", length=LENGTH)
    fow_tl = RedisTimelines(client, prefix=f"{names.prefix}:fow", length=LENGTH)
    index = graph.index()
    readers = [index[r] for r in graph.readers]
    everyone = set(range(users))
    try:
        hybrid = wire(database, hybrid_tl, threshold, graph)
        fow = wire(database, fow_tl, NEVER, graph)
        baseline = FanoutOnRead(database, graph)
        started = time.perf_counter()
        truth = await write_timelines(dsn, hybrid_tl, graph, readers, everyone - read_time)
        feed_sizes = sorted(len(v) for v in truth.values())
        print(
            f"readers: {len(readers)}, feed lengths {feed_sizes[0]}..{feed_sizes[-1]} "
            f"(median {feed_sizes[len(feed_sizes) // 2]}); timelines written in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        # The graph (millions of objects) is never garbage: out of the collector's scans,
        # which would otherwise pause the reads measured below.
        gc.collect()
        gc.freeze()
        short = [r for r in truth if len(truth[r]) < DEEP * PAGE]
        for reader in short:
            del truth[reader]

        # 1. reads
        rows: list[list[str]] = []
        trips = Trips(database, client)
        spy = Profiler(args.profile)
        spy.start("hybrid reads")
        await measure_reads("hybrid", reads_of_service(hybrid.service), truth, args, rows, trips)
        spy.stop()
        await measure_reads(
            "hybrid, folded (what-if)",
            reads_of_lean(LeanHybrid(hybrid.service)),
            truth,
            args,
            rows,
            trips,
        )
        await measure_reads(
            "fan-out-on-read", reads_of_baseline(baseline), truth, args, rows, trips
        )
        # Pure fan-out on write: nobody read at read time, every post delivered.
        async with database.transaction() as tx:
            await tx.exec_driver_sql("UPDATE feed_users SET read_time = false WHERE read_time")
        await write_timelines(dsn, fow_tl, graph, readers, None)
        await measure_reads(
            "fan-out-on-write", reads_of_service(fow.service), truth, args, rows, trips
        )
        print_table(
            f"Feed reads, {PAGE} a page, in process (ms); closed loop, 1 reader and "
            f"{args.concurrency} concurrent readers, {args.seconds:g} s each",
            [
                "strategy",
                "page",
                "p50 x1",
                "p99 x1",
                f"p50 x{args.concurrency}",
                f"p99 x{args.concurrency}",
                "reads/s",
                "SQL / Redis / checkouts",
                "pages vs truth",
            ],
            rows,
        )

        # 3. one celebrity post, pure fan-out on write (the flags are off now), on a Redis
        # of its own so that INFO commandstats counts this process's commands alone.
        celebrity = graph.celebrities[0]
        private = await PrivateRedis.start()
        try:
            own = private.client
            fow_own = wire(database, RedisTimelines(own, prefix="fow", length=LENGTH), NEVER, graph)
            hybrid_own = wire(
                database, RedisTimelines(own, prefix="hybrid", length=LENGTH), threshold, graph
            )
            await mark_cached(fow_own.timelines, graph.users)
            await mark_cached(hybrid_own.timelines, graph.users)
            celebrity_rows = [await celebrity_post(fow_own, own, celebrity, "fan-out-on-write")]
            async with database.transaction() as tx:
                await tx.exec_driver_sql(
                    f"UPDATE feed_users SET read_time = true WHERE follower_count > {threshold}"
                )
            celebrity_rows.insert(0, await celebrity_post(hybrid_own, own, celebrity, "hybrid"))
        finally:
            await private.stop()
        print_table(
            f"One post by a celebrity ({graph.follower_count[0]:,} followers, all active "
            f"and cached): Fanout.post_created; Redis commands from INFO commandstats of a "
            f"redis-server of the run's own",
            ["strategy", "ms", "timelines", "Redis writes", "Redis calls", "by command"],
            celebrity_rows,
        )

        # 2. fan-out throughput (hybrid: authors under the threshold)
        band = [
            n
            for n, c in enumerate(graph.follower_count)
            if threshold // 10 <= c <= threshold and n not in read_time
        ]
        band.sort(key=lambda n: -graph.follower_count[n])
        fan_rows = []
        spy.start("fan-out")
        for concurrency in (1, 4):
            fan_rows.append(
                await fanout_rate(
                    hybrid, database, graph, band[: 8 if args.quick else 16], concurrency
                )
            )
        spy.stop()
        print_table(
            "Fan-out on write (hybrid, Fanout.post_created): timeline inserts, each a "
            "feed_timeline row and a Redis sorted-set entry",
            [
                "posts at once",
                "posts",
                "followers",
                "inserts",
                "seconds",
                "inserts/s",
                "per post p50 ms",
            ],
            fan_rows,
        )

        top = graph.users[band[0]]
        print_table(
            f"One fan-out by step ({graph.follower_count[band[0]]:,} followers, batches of "
            f"{FOLLOWER_PAGE:,}): the steps of Fanout.post_created timed one by one",
            ["step", "ms", "share", "rows/s if alone"],
            await fanout_steps(hybrid, database, top),
        )

        # 4. post to visible
        # A reader and the most followed author they follow who is fanned out on write.
        normal = max(
            ((r, a) for r in readers[:50] for a in graph.following[r] if a not in read_time),
            key=lambda pair: graph.follower_count[pair[1]],
        )
        celeb_reader = next(r for r in readers if graph.following[r] & set(range(5)))
        celeb = min(graph.following[celeb_reader] & set(range(5)))
        visible_rows = [
            await post_to_visible(hybrid, graph, *normal, "normal author", args),
            await post_to_visible(hybrid, graph, celeb_reader, celeb, "celebrity", args),
        ]
        print_table(
            "Post to visible in a follower's first page (hybrid): create_post, then the "
            "fan-out handler called directly (no bus), the first page polled meanwhile",
            ["author", "followers", "posts", "p50 ms", "p99 ms", "max ms"],
            visible_rows,
        )
        spy.report()
        print(f"\nload average (1, 5, 15 min) at the end {os.getloadavg()}")
    finally:
        await client.aclose()
        await database.dispose()


def _spawn_redis(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )


class PrivateRedis:
    """A redis-server of this run's own (no persistence), so its command counters are ours."""

    def __init__(self, proc: subprocess.Popen[bytes], client: Any) -> None:
        self.proc, self.client = proc, client

    @classmethod
    async def start(cls) -> PrivateRedis:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = _spawn_redis(port)
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
        for _ in range(100):
            try:
                await client.ping()
                return cls(proc, client)
            except aioredis.ConnectionError:
                await asyncio.sleep(0.05)
        proc.kill()
        raise SystemExit("the private redis-server did not start")

    async def stop(self) -> None:
        await self.client.aclose()
        self.proc.terminate()
        self.proc.wait(timeout=10)


async def new_post(stack: Stack, author: str) -> Envelope:
    """A post in the posts table (as create_post leaves it) and its PostCreated."""
    post = await stack.service.create_post(author, "a benchmark post")
    event = PostCreated(post.id, author, post.created_at.isoformat())
    return Envelope(type=PostCreated.type, key=author, payload=event.to_payload())


async def celebrity_post(stack: Stack, client: Any, author: str, name: str) -> list[str]:
    envelope = await new_post(stack, author)
    before = await command_stats(client)
    started = time.perf_counter()
    delivered = await stack.fanout.post_created(envelope)
    elapsed = (time.perf_counter() - started) * 1000
    spent = delta(await command_stats(client), before)
    spent.pop("info", None)
    writes = sum(v for k, v in spent.items() if k in REDIS_WRITES)
    top = ", ".join(f"{k} {v:,}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1])[:5])
    return [
        name,
        f"{elapsed:.1f}",
        f"{delivered:,}",
        f"{writes:,}",
        f"{sum(spent.values()):,}",
        top,
    ]


async def fanout_rate(
    stack: Stack, database: Database, graph: Graph, authors: list[int], concurrency: int
) -> list[str]:
    envelopes = [await new_post(stack, graph.users[a]) for a in authors]
    followers = sum(graph.follower_count[a] for a in authors)
    queue = list(envelopes)
    each: list[float] = []
    delivered = 0

    async def worker() -> None:
        nonlocal delivered
        while queue:
            envelope = queue.pop()
            started = time.perf_counter()
            written = await stack.fanout.post_created(envelope)
            delivered += written
            each.append((time.perf_counter() - started) * 1000)

    gc.collect()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    # the author's own timeline is one of `delivered`
    return [
        str(concurrency),
        str(len(authors)),
        f"{followers:,}",
        f"{delivered:,}",
        f"{elapsed:.2f}",
        f"{delivered / elapsed:,.0f}",
        f"{percentile(each, 50):.0f}",
    ]


async def fanout_steps(stack: Stack, database: Database, author: str) -> list[list[str]]:
    """Where one post's fan-out spends its time: the steps of `Fanout.post_created` for a
    normal author, timed one by one over every batch of FOLLOWER_PAGE followers."""
    envelope = await new_post(stack, author)
    post_id = envelope.payload["post_id"]
    posts, follows, feed_store, activity = SqlPosts(), SqlFollows(), SqlFeedStore(), SqlActivity()
    del posts
    spent = {
        "followers page": 0.0,
        "active_among": 0.0,
        "feed_timeline insert": 0.0,
        "Redis push": 0.0,
    }
    since = SystemClock().now() - INACTIVE
    after: str | None = None
    rows = 0
    while True:
        started = time.perf_counter()
        async with database.connect() as tx:
            followers = await follows.followers(tx, author, after, FOLLOWER_PAGE)
            mid = time.perf_counter()
            active = await activity.active_among(tx, followers, since) if followers else set()
        spent["followers page"] += mid - started
        spent["active_among"] += time.perf_counter() - mid
        owners = [f for f in followers if f in active]
        started = time.perf_counter()
        async with database.transaction() as tx:
            await feed_store.add(tx, [(owner, post_id, author) for owner in owners])
        mid = time.perf_counter()
        await stack.timelines.push([(owner, post_id) for owner in owners])
        spent["feed_timeline insert"] += mid - started
        spent["Redis push"] += time.perf_counter() - mid
        rows += len(owners)
        if len(followers) < FOLLOWER_PAGE:
            break
        after = followers[-1]
    total = sum(spent.values())
    return [
        [
            step,
            f"{seconds * 1000:.0f}",
            f"{100 * seconds / total:.0f}%",
            f"{rows / seconds:,.0f}" if seconds else "-",
        ]
        for step, seconds in spent.items()
    ] + [["all", f"{total * 1000:.0f}", "100%", f"{rows / total:,.0f}"]]


async def post_to_visible(
    stack: Stack, graph: Graph, reader: int, author: int, name: str, args: Any
) -> list[str]:
    owner, writer = graph.users[reader], graph.users[author]
    latencies: list[float] = []
    for _ in range(10 if args.quick else 50):
        started = time.perf_counter()
        post = await stack.service.create_post(writer, "to be seen")
        event = PostCreated(post.id, writer, post.created_at.isoformat())
        envelope = Envelope(type=PostCreated.type, key=writer, payload=event.to_payload())
        handler = asyncio.create_task(stack.fanout.handle(envelope))
        while True:
            page = await stack.service.feed(owner, None, PAGE)
            if any(item.post.id == post.id for item in page.items):
                break
        latencies.append((time.perf_counter() - started) * 1000)
        await handler
    return [
        name,
        f"{graph.follower_count[author]:,}",
        str(len(latencies)),
        f"{percentile(latencies, 50):.1f}",
        f"{percentile(latencies, 99):.1f}",
        f"{max(latencies):.1f}",
    ]


# --- profiling -----------------------------------------------------------------------------


class Profiler:
    """py-spy (from the bench lock) recording this process, as a flat top list."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.proc: subprocess.Popen[bytes] | None = None
        self.outputs: dict[str, Path] = {}

    def start(self, label: str) -> None:
        if not self.enabled:
            return
        self.output = Path(tempfile.gettempdir()) / f"feed-bench-{os.getpid()}-{label}.txt"
        self.outputs[label] = self.output
        spy = str(Path(sys.executable).with_name("py-spy"))
        self.proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(os.getpid()),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(self.output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
            self.proc = None

    def report(self, top: int = 25) -> None:
        for label, output in self.outputs.items():
            if output.exists():
                self._report(label, output, top)
                output.unlink()

    def _report(self, label: str, output: Path, top: int) -> None:
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for frame in set(frames):
                if "townhall" in frame or "sqlalchemy" in frame or "redis" in frame:
                    inclusive[frame] = inclusive.get(frame, 0) + count
        if not total:
            return
        print(f"\npy-spy, {label} ({total} samples): top frames by own time\n")
        for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{100 * count / total:5.1f}%  {frame}")
        print("\ninclusive (townhall, sqlalchemy, redis frames)\n")
        for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{100 * count / total:5.1f}%  {frame}")


# --- clean-up ---------------------------------------------------------------------------------


async def clean(names: Names) -> None:
    try:
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        removed = await delete_prefix(client, names.prefix)
        await client.aclose()
        print(f"clean-up: {removed} Redis keys under {names.prefix}:", file=sys.stderr)
    except Exception as exc:
        print(f"clean-up: Redis keys failed: {exc}", file=sys.stderr)
    try:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{names.database}" WITH (FORCE)')
        await admin.close()
    except Exception as exc:
        print(f"clean-up: database {names.database} failed: {exc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the graph, short runs")
    parser.add_argument("--seconds", type=float, default=None, help="per read measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="py-spy on the hybrid reads")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 5.0
    run_id = uuid.uuid4().hex[:8]
    names = Names(f"bench_feed_{run_id}", f"bench-feed-{run_id}")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        asyncio.run(run(args, names))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        asyncio.run(clean(names))


if __name__ == "__main__":
    main()
