"""Inventory's bus handlers on in-memory ports: what they make of each message, including those
they cannot read (a permanent failure is answered; one without an order raises, for the
dead letters)."""

from __future__ import annotations

import pytest

from support.inventory_fakes import MemoryInventory
from townhall.inventory.consumers import InventoryConsumers
from townhall.inventory.events import StockReservationFailed, StockReserved
from townhall.inventory.service import Catalogue, Stock
from townhall.orders.events import OrderConfirmed
from townhall.platform.clock import FrozenClock
from townhall.platform.messaging import Envelope


@pytest.fixture
async def world():
    memory, clock = MemoryInventory(), FrozenClock()
    products, reservations, messages = memory.stores()
    await Catalogue(memory, products, clock).add("tee-m", "T-shirt", 1500, "EUR", 5)
    stock = Stock(memory, products, reservations, messages, clock)
    return memory, InventoryConsumers(stock)


def reserve(payload) -> Envelope:
    return Envelope(type="inventory.ReserveStock", key="o-1", payload=payload)


async def test_a_command_is_answered_once_per_message(world):
    memory, consumers = world
    command = reserve({"order_id": "o-1", "lines": [{"sku": "tee-m", "quantity": 2}]})
    await consumers.on_command(command)
    await consumers.on_command(command)
    assert [kind for kind, *_ in memory.published] == [StockReserved.type]
    assert memory.products["tee-m"].reserved == 2


@pytest.mark.parametrize(
    "lines",
    [
        [{"sku": "tee-m", "quantity": "2"}],
        [{"sku": "tee-m", "quantity": True}],
        [{"sku": 7, "quantity": 1}],
        [{"sku": "tee-m"}],
        "tee-m",
    ],
)
async def test_unreadable_lines_are_refused_not_retried(world, lines):
    memory, consumers = world
    await consumers.on_command(reserve({"order_id": "o-1", "lines": lines}))
    [(kind, key, payload, _)] = memory.published
    assert (kind, key, payload["order_id"]) == (StockReservationFailed.type, "o-1", "o-1")
    assert payload["skus"]  # names what it refused
    assert memory.products["tee-m"].reserved == 0


async def test_a_command_without_an_order_goes_to_the_dead_letters(world):
    memory, consumers = world
    with pytest.raises(ValueError, match="order id"):
        await consumers.on_command(reserve({"lines": []}))
    with pytest.raises(ValueError, match="order id"):
        await consumers.on_command(Envelope(type="inventory.ReleaseStock", key="x", payload=[]))
    assert memory.published == []


async def test_an_unknown_command_and_other_order_events_are_ignored(world):
    memory, consumers = world
    await consumers.on_command(Envelope(type="inventory.Nothing", key="o-1", payload={}))
    await consumers.on_order(Envelope(type="orders.OrderPlaced", key="o-1", payload={}))
    assert memory.published == [] and memory.reservations == {}


async def test_an_order_confirmed_takes_the_reserved_stock(world):
    memory, consumers = world
    await consumers.on_command(
        reserve({"order_id": "o-1", "lines": [{"sku": "tee-m", "quantity": 2}]})
    )
    confirmed = OrderConfirmed("o-1", "buyer-1", 3000, "EUR")
    await consumers.on_order(
        Envelope(type=confirmed.type, key="o-1", payload=confirmed.to_payload())
    )
    product = memory.products["tee-m"]
    assert (product.on_hand, product.reserved) == (3, 0)
