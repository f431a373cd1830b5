"""The order desk on fakes: one order per (buyer, idempotency key), also when two requests
with the key race; the key with another request is refused and places nothing."""

from __future__ import annotations

import asyncio

import pytest

from support.order_fakes import (
    FixedPrices,
    MemoryIdempotencyKeys,
    MemoryMessages,
    MemoryOrders,
    MemorySagas,
    MemoryTimeline,
    MemoryTransactions,
)
from support.orders import ADDRESS, CARD, T0
from townhall.orders.service import KeyReused, Orchestrator, OrderDesk, OrderRequest
from townhall.platform.clock import FrozenClock

REQUEST = OrderRequest([("tee-m", 2)], ADDRESS, CARD)


@pytest.fixture
def world():
    clock, tx, orders = FrozenClock(T0), MemoryTransactions(), MemoryOrders()
    orchestrator = Orchestrator(
        tx, orders, MemorySagas(), MemoryTimeline(), MemoryMessages(), clock
    )
    keys = MemoryIdempotencyKeys()
    desk = OrderDesk(tx, orchestrator, FixedPrices(), keys, clock)
    return desk, orders, keys


async def test_the_same_key_and_request_give_the_same_order(world):
    desk, orders, _ = world
    first = await desk.place("buyer-1", "k1", "fp", REQUEST)
    again = await desk.place("buyer-1", "k1", "fp", REQUEST)
    assert again.id == first.id
    assert first.total_cents == 3000
    assert len(orders.streams) == 1


async def test_two_racing_requests_with_one_key_give_one_order(world):
    desk, orders, keys = world
    one, two = await asyncio.gather(
        desk.place("buyer-1", "k1", "fp", REQUEST), desk.place("buyer-1", "k1", "fp", REQUEST)
    )
    assert one.id == two.id
    assert len(orders.streams) == 1
    assert keys.refused == 1  # the loser's order was rolled back, not kept


async def test_the_key_with_another_request_is_refused(world):
    desk, orders, _ = world
    await desk.place("buyer-1", "k1", "fp", REQUEST)
    with pytest.raises(KeyReused) as refused:
        await desk.place("buyer-1", "k1", "other", REQUEST)
    assert refused.value.field == "Idempotency-Key"
    assert len(orders.streams) == 1


async def test_keys_are_per_buyer(world):
    desk, orders, _ = world
    mine = await desk.place("buyer-1", "k1", "fp", REQUEST)
    theirs = await desk.place("buyer-2", "k1", "fp", REQUEST)
    assert mine.id != theirs.id
    assert len(orders.streams) == 2
