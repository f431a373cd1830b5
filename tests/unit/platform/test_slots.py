import asyncio

import pytest

from townhall.platform.slots import Slots


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_free_slots_are_taken_at_once_and_a_group_waits_until_all_it_needs_are_free():
    slots = Slots(4)
    await slots.take(3)
    group = asyncio.create_task(slots.take(3))
    await settle()
    assert not group.done() and slots.free == 1
    slots.give()  # 2 free: still not enough for 3
    await settle()
    assert not group.done()
    slots.give()
    await settle()
    assert group.done() and slots.free == 0


async def test_waiters_are_served_in_order_so_a_big_group_is_not_starved_by_small_ones():
    slots = Slots(4)
    await slots.take(4)
    served: list[str] = []

    async def taker(name: str, n: int) -> None:
        await slots.take(n)
        served.append(name)

    big = asyncio.create_task(taker("big", 4))
    await settle()
    small = asyncio.create_task(taker("small", 1))
    slots.give()  # one free: enough for "small", but "big" came first
    await settle()
    assert served == []
    slots.give(3)
    await settle()
    assert served == ["big"]
    slots.give(4)
    await settle()
    assert served == ["big", "small"]
    await asyncio.gather(big, small)


async def test_a_cancelled_waiter_leaves_the_queue_and_those_behind_it_go():
    slots = Slots(2)
    await slots.take(2)
    big = asyncio.create_task(slots.take(2))
    await settle()
    small = asyncio.create_task(slots.take(1))
    slots.give()
    await settle()
    assert not small.done()  # behind "big"
    big.cancel()
    await settle()
    assert small.done() and slots.free == 0
    with pytest.raises(asyncio.CancelledError):
        await big


async def test_slots_granted_to_a_taker_cancelled_before_it_ran_are_given_back():
    slots = Slots(2)
    await slots.take(2)
    taker = asyncio.create_task(slots.take(2))
    await settle()
    slots.give(2)  # granted now: the future is resolved, the task has not run yet
    taker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert slots.free == 2


async def test_more_than_the_capacity_or_giving_back_what_was_not_taken_is_an_error():
    slots = Slots(2)
    with pytest.raises(ValueError):
        await slots.take(3)
    with pytest.raises(ValueError):
        await slots.take(0)
    with pytest.raises(ValueError):
        slots.give()
