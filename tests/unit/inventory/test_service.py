"""Inventory's use cases on in-memory ports: the catalogue, reservations all or none and once per
order, releases that are idempotent, confirmed orders taking their stock, and expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from support.inventory_fakes import MemoryInventory
from townhall.inventory.domain import (
    BelowReserved,
    ReservationStatus,
    SkuTaken,
    UnknownProduct,
)
from townhall.inventory.events import (
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from townhall.inventory.ports import Cause
from townhall.inventory.service import Catalogue, Stock
from townhall.platform.clock import FrozenClock
from townhall.platform.errors import Invalid

TTL = timedelta(minutes=15)


class World:
    def __init__(self) -> None:
        self.memory = MemoryInventory()
        self.clock = FrozenClock()
        products, reservations, messages = self.memory.stores()
        self.catalogue = Catalogue(self.memory, products, self.clock)
        self.stock = Stock(self.memory, products, reservations, messages, self.clock, ttl=TTL)

    def available(self, sku: str) -> int:
        return self.memory.products[sku].available

    def answers(self) -> list[tuple[str, dict]]:
        return [(kind, payload) for kind, _, payload, _ in self.memory.published]


@pytest.fixture
async def world() -> World:
    w = World()
    await w.catalogue.add("tee-m", "T-shirt M", 1500, "EUR", 5)
    await w.catalogue.add("ticket-2027", "Ticket 2027", 4000, "EUR", 2)
    return w


def reserve(order_id: str, *lines: tuple[str, int]) -> ReserveStock:
    return ReserveStock(order_id, tuple(StockLine(sku, quantity) for sku, quantity in lines))


def cause(message_id: str = "m-1") -> Cause:
    return Cause(correlation_id="saga-1", message_id=message_id)


# --- the catalogue --------------------------------------------------------------------------


async def test_a_taken_sku_is_refused(world):
    with pytest.raises(SkuTaken):
        await world.catalogue.add("tee-m", "Another", 100, "EUR", 1)
    assert world.memory.products["tee-m"].name == "T-shirt M"


@pytest.mark.parametrize(
    ("sku", "name", "price", "currency", "stock", "field"),
    [
        ("", "Mug", 100, "EUR", 1, "sku"),
        ("  ", "Mug", 100, "EUR", 1, "sku"),
        ("mug/2", "Mug", 100, "EUR", 1, "sku"),
        ("mug", " ", 100, "EUR", 1, "name"),
        ("mug", "Mug", -1, "EUR", 1, "price_cents"),
        ("mug", "Mug", 100, "eur", 1, "currency"),
        ("mug", "Mug", 100, "EURO", 1, "currency"),
        ("mug", "Mug", 100, "EUR", -1, "stock"),
    ],
)
async def test_a_bad_product_is_refused_naming_the_field(sku, name, price, currency, stock, field):
    w = World()
    with pytest.raises(Invalid) as refused:
        await w.catalogue.add(sku, name, price, currency, stock)
    assert refused.value.field == field
    assert w.memory.products == {}


async def test_the_catalogue_pages_in_sku_order(world):
    await world.catalogue.add("badge", "Badge", 200, "EUR", 0)
    first, after = await world.catalogue.page(None, 2)
    assert [p.sku for p in first] == ["badge", "tee-m"]
    second, end = await world.catalogue.page(after, 2)
    assert [p.sku for p in second] == ["ticket-2027"]
    assert end is None


async def test_a_price_and_a_name_change_and_an_unknown_sku_is_not_found(world):
    changed = await world.catalogue.update("tee-m", price_cents=1800)
    assert (changed.price_cents, changed.name) == (1800, "T-shirt M")
    renamed = await world.catalogue.update("tee-m", name="Tee M")
    assert (renamed.price_cents, renamed.name) == (1800, "Tee M")
    with pytest.raises(UnknownProduct):
        await world.catalogue.update("nothing", price_cents=1)
    with pytest.raises(Invalid) as refused:
        await world.catalogue.update("tee-m", price_cents=-5)
    assert refused.value.field == "price_cents"


async def test_a_restock_adds_and_a_correction_never_goes_below_what_is_reserved(world):
    await world.stock.reserve(reserve("o-1", ("tee-m", 4)), cause())
    restocked = await world.catalogue.adjust_stock("tee-m", 10, "restock", "admin-1")
    assert (restocked.on_hand, restocked.available) == (15, 11)
    with pytest.raises(BelowReserved) as refused:
        await world.catalogue.adjust_stock("tee-m", -12, "count", "admin-1")
    assert refused.value.field == "delta"
    assert "4 reserved" in refused.value.detail
    assert world.memory.products["tee-m"].on_hand == 15
    corrected = await world.catalogue.adjust_stock("tee-m", -11, "count", "admin-1")
    assert (corrected.on_hand, corrected.reserved, corrected.available) == (4, 4, 0)
    assert [(a.delta, a.reason) for a in world.memory.adjustments] == [
        (10, "restock"),
        (-11, "count"),
    ]


async def test_a_stock_change_needs_a_known_sku_a_delta_and_a_reason(world):
    with pytest.raises(UnknownProduct):
        await world.catalogue.adjust_stock("nothing", 1, "restock", "admin-1")
    for delta, reason, field in [(0, "x", "delta"), (1, " ", "reason")]:
        with pytest.raises(Invalid) as refused:
            await world.catalogue.adjust_stock("tee-m", delta, reason, "admin-1")
        assert refused.value.field == field


async def test_a_quote_gives_current_prices_in_the_basket_currency(world):
    await world.catalogue.update("tee-m", price_cents=1700)
    quote = await world.catalogue.quote([("ticket-2027", 1), ("tee-m", 2)])
    assert [(q.sku, q.quantity, q.unit_price_cents) for q in quote.lines] == [
        ("ticket-2027", 1, 4000),
        ("tee-m", 2, 1700),
    ]
    assert (quote.currency, quote.total_cents) == ("EUR", 7400)


async def test_a_quote_names_the_unknown_sku_and_refuses_mixed_currencies(world):
    with pytest.raises(Invalid) as unknown:
        await world.catalogue.quote([("tee-m", 1), ("nothing", 1)])
    assert unknown.value.field == "items.1.sku"
    await world.catalogue.add("mug-usd", "Mug", 900, "USD", 3)
    with pytest.raises(Invalid) as mixed:
        await world.catalogue.quote([("tee-m", 1), ("mug-usd", 1)])
    assert mixed.value.field == "items"
    with pytest.raises(Invalid) as empty:
        await world.catalogue.quote([])
    assert empty.value.field == "items"


# --- reservations ---------------------------------------------------------------------------


async def test_every_line_is_reserved_and_the_answer_joins_the_saga(world):
    answer = await world.stock.reserve(reserve("o-1", ("tee-m", 2), ("ticket-2027", 1)), cause())
    assert answer == StockReserved("o-1")
    assert (world.available("tee-m"), world.available("ticket-2027")) == (3, 1)
    assert world.memory.published == [
        (
            StockReserved.type,
            "o-1",
            {"order_id": "o-1"},
            {"correlation_id": "saga-1", "causation_id": "m-1"},
        )
    ]


async def test_a_basket_short_of_one_sku_reserves_nothing_and_names_it(world):
    answer = await world.stock.reserve(reserve("o-1", ("tee-m", 2), ("ticket-2027", 3)), cause())
    assert answer == StockReservationFailed("o-1", ("ticket-2027",))
    assert (world.available("tee-m"), world.available("ticket-2027")) == (5, 2)
    assert world.answers() == [
        (StockReservationFailed.type, {"order_id": "o-1", "skus": ["ticket-2027"]})
    ]


async def test_unknown_skus_and_quantities_below_one_are_refused(world):
    unknown = await world.stock.reserve(reserve("o-1", ("tee-m", 1), ("nothing", 1)), cause())
    assert unknown == StockReservationFailed("o-1", ("nothing",))
    zero = await world.stock.reserve(reserve("o-2", ("tee-m", 0)), cause("m-2"))
    assert zero == StockReservationFailed("o-2", ("tee-m",))
    assert world.available("tee-m") == 5


async def test_lines_of_one_sku_are_reserved_together(world):
    answer = await world.stock.reserve(reserve("o-1", ("tee-m", 3), ("tee-m", 3)), cause())
    assert answer == StockReservationFailed("o-1", ("tee-m",))
    assert world.available("tee-m") == 5


async def test_a_repeated_reservation_answers_as_the_first_and_holds_once(world):
    first = await world.stock.reserve(reserve("o-1", ("tee-m", 2)), cause("m-1"))
    again = await world.stock.reserve(reserve("o-1", ("tee-m", 2)), cause("m-2"))
    assert first == again == StockReserved("o-1")
    assert world.available("tee-m") == 3
    refused = await world.stock.reserve(reserve("o-2", ("tee-m", 9)), cause("m-3"))
    await world.catalogue.adjust_stock("tee-m", 10, "restock", "admin-1")
    still = await world.stock.reserve(reserve("o-2", ("tee-m", 9)), cause("m-4"))
    assert refused == still == StockReservationFailed("o-2", ("tee-m",))
    assert world.available("tee-m") == 13


async def test_a_message_the_group_handled_does_nothing(world):
    command = reserve("o-1", ("tee-m", 2))
    assert await world.stock.reserve(command, cause("m-1"), group="g") == StockReserved("o-1")
    assert await world.stock.reserve(command, cause("m-1"), group="g") is None
    assert len(world.memory.published) == 1


async def test_a_release_gives_back_once_and_always_answers(world):
    await world.stock.reserve(reserve("o-1", ("tee-m", 2)), cause())
    assert await world.stock.release(ReleaseStock("o-1"), cause("m-2")) == StockReleased("o-1")
    assert await world.stock.release(ReleaseStock("o-1"), cause("m-3")) == StockReleased("o-1")
    assert world.available("tee-m") == 5
    assert world.memory.reservations["o-1"].status is ReservationStatus.RELEASED
    assert [kind for kind, _ in world.answers()] == [
        StockReserved.type,
        StockReleased.type,
        StockReleased.type,
    ]


async def test_releasing_what_was_never_held_changes_nothing(world):
    assert await world.stock.release(ReleaseStock("o-9"), cause()) == StockReleased("o-9")
    await world.stock.reserve(reserve("o-1", ("tee-m", 9)), cause("m-2"))  # refused
    assert await world.stock.release(ReleaseStock("o-1"), cause("m-3")) == StockReleased("o-1")
    assert world.available("tee-m") == 5
    assert world.memory.reservations["o-1"].status is ReservationStatus.FAILED


async def test_a_confirmed_order_takes_its_stock_for_good_once(world):
    await world.stock.reserve(reserve("o-1", ("tee-m", 2)), cause())
    assert await world.stock.ship("o-1", cause("m-2"))
    assert not await world.stock.ship("o-1", cause("m-3"))
    product = world.memory.products["tee-m"]
    assert (product.on_hand, product.reserved) == (3, 0)
    await world.stock.release(ReleaseStock("o-1"), cause("m-4"))  # a late compensation
    assert (world.memory.products["tee-m"].on_hand, world.available("tee-m")) == (3, 3)
    world.clock.advance(seconds=TTL.total_seconds() + 1)
    assert await world.stock.expire_due() == []


async def test_a_reservation_nobody_settles_expires_after_its_ttl(world):
    await world.stock.reserve(reserve("o-1", ("tee-m", 2)), cause())
    world.clock.advance(seconds=TTL.total_seconds() - 1)
    assert await world.stock.expire_due() == []
    assert world.available("tee-m") == 3
    world.clock.advance(seconds=1)
    assert await world.stock.expire_due() == ["o-1"]
    assert world.available("tee-m") == 5
    assert world.memory.reservations["o-1"].status is ReservationStatus.EXPIRED
    kind, key, payload, headers = world.memory.published[-1]
    assert (kind, key, payload) == (StockReleased.type, "o-1", {"order_id": "o-1"})
    assert headers == {"correlation_id": "saga-1"}  # the saga's, though nothing caused it
    assert await world.stock.expire_due() == []
    # The saga's compensation, arriving after: nothing to give back, still answered.
    assert await world.stock.release(ReleaseStock("o-1"), cause("m-2")) == StockReleased("o-1")
    assert world.available("tee-m") == 5


async def test_a_released_reservation_does_not_expire(world):
    await world.stock.reserve(reserve("o-1", ("tee-m", 2)), cause())
    await world.stock.release(ReleaseStock("o-1"), cause("m-2"))
    world.clock.advance(seconds=TTL.total_seconds() + 1)
    assert await world.stock.expire_due() == []
    assert world.available("tee-m") == 5
