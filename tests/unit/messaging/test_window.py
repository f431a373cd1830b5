"""The window of unacked messages a member holds, shared by its partitions: bounded, and fair
(a partition that gives its share back and asks again at once waits behind those waiting)."""

from __future__ import annotations

import asyncio

from townhall.platform.messaging.engine import Window


async def test_the_window_never_holds_more_than_its_size():
    window = Window(3)
    assert await window.reserve(2) == 2
    assert await window.reserve(5) == 1
    waiting = asyncio.create_task(window.reserve(4))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    window.release(2)
    assert await waiting == 2
    assert window.used == 3


async def test_partitions_outnumbering_the_window_are_each_served_in_turn():
    """Eight partitions over a window of four, each taking one slot, holding it for an empty
    fetch, giving it back and asking again at once: every partition gets its turns."""
    window = Window(4)
    turns = dict.fromkeys(range(8), 0)
    stop = asyncio.Event()

    async def partition(number: int) -> None:
        while not stop.is_set():
            reserved = await window.reserve(1)
            turns[number] += 1
            await asyncio.sleep(0.005)  # an empty fetch
            window.release(reserved)

    tasks = [asyncio.create_task(partition(n)) for n in turns]
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    assert min(turns.values()) >= 5, turns
    assert max(turns.values()) - min(turns.values()) <= 2, turns


async def test_a_waiter_cancelled_after_its_turn_came_passes_the_slot_on():
    window = Window(1)
    assert await window.reserve(1) == 1
    first = asyncio.create_task(window.reserve(1))
    second = asyncio.create_task(window.reserve(1))
    await asyncio.sleep(0.01)
    window.release(1)  # first's turn: one slot taken for it
    first.cancel()
    assert await second == 1
    assert window.used == 1
