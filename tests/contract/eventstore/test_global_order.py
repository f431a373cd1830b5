"""The gap problem: a tailing reader never skips an event whose transaction commits late."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from support.eventstore import events
from townhall.platform.eventstore import ANY


async def test_a_reader_still_gets_an_event_whose_transaction_took_its_position_first(store):
    seen: list[tuple[int, str]] = []

    async def read_on() -> None:
        after = seen[-1][0] if seen else 0
        seen.extend((e.position, e.type) for e in await store.read_all(from_position=after))

    a_has_position, release_a = asyncio.Event(), asyncio.Event()

    async def writer_a() -> None:
        async with store.database.transaction() as conn:
            await store.append("order-a", events("A"), conn=conn)
            a_has_position.set()
            await release_a.wait()  # A stalls between taking its position and committing

    task_a = asyncio.create_task(writer_a())
    await a_has_position.wait()
    task_b = asyncio.create_task(store.append("order-b", events("B")))
    await asyncio.sleep(0.3)  # B has had every chance to commit
    await read_on()  # the reader reads past whatever B committed
    # The design: positions are handed out under a lock held to commit, so B's commit
    # waits for A's and no reader can see B's position before A's.
    assert not task_b.done()
    assert seen == []
    release_a.set()
    await asyncio.gather(task_a, task_b)
    await read_on()
    assert seen == [(1, "A"), (2, "B")]


@pytest.mark.slow
async def test_a_tailing_reader_sees_every_event_once_in_order_under_concurrent_writers(store):
    """8 writers for 5 s, some stalling inside their transaction before commit."""
    writers, duration = 8, 5.0
    deadline = time.monotonic() + duration
    appended = 0
    done = asyncio.Event()

    async def writer(n: int) -> None:
        nonlocal appended
        rng = random.Random(n)
        while time.monotonic() < deadline:
            batch = events(*(f"W{n}" for _ in range(rng.randint(1, 3))))
            stream = f"stream-{n}-{rng.randint(0, 9)}" if rng.random() < 0.8 else "shared-1"
            if rng.random() < 0.5:
                await store.append(stream, batch, expected_version=ANY)
            else:
                async with store.database.transaction() as conn:
                    await store.append(stream, batch, expected_version=ANY, conn=conn)
                    await asyncio.sleep(rng.random() * 0.005)  # commit late
            appended += len(batch)

    seen: list[int] = []

    async def tail() -> None:
        while True:
            finished = done.is_set()
            page = await store.read_all(from_position=seen[-1] if seen else 0, limit=200)
            seen.extend(e.position for e in page)
            if finished and not page:
                return
            if not page:
                await asyncio.sleep(0.001)

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    await reader
    assert appended > writers * 10  # the writers really ran concurrently for a while
    assert seen == list(range(1, appended + 1))  # every event, once, ascending, no holes
