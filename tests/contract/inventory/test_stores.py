"""One contract for inventory's store ports, run against the SQL stores on SQLite and on
PostgreSQL and against the in-memory fakes the unit tests use: the fakes behave as the real
stores do, or this fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import townhall.inventory
from support.databases import migrated_database, outbox_envelopes
from support.inventory_fakes import MemoryInventory
from townhall.inventory.adapters.outbox import OutboxMessages
from townhall.inventory.adapters.sql import SqlProducts, SqlReservations
from townhall.inventory.domain import (
    Product,
    Reservation,
    ReservationStatus,
    SkuTaken,
    StockAdjustment,
)
from townhall.inventory.events import StockReleased, StockReservationFailed
from townhall.inventory.ports import Cause, Messages, Products, Reservations
from townhall.platform.transaction import Transactions

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
MIGRATIONS = Path(townhall.inventory.__file__).parent / "migrations"
Published = list[tuple[str, str, dict[str, Any], dict[str, str]]]


@dataclass
class Stores:
    db: Transactions
    products: Products
    reservations: Reservations
    messages: Messages
    published: Callable[[], Awaitable[Published]]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def stores(request, tmp_path) -> AsyncIterator[Stores]:
    if request.param == "memory":
        memory = MemoryInventory()

        async def published_in_memory() -> Published:
            return list(memory.published)

        yield Stores(memory, *memory.stores(), published_in_memory)
        return
    async with migrated_database(request.param, tmp_path, [MIGRATIONS]) as database:

        async def published_in_outbox() -> Published:
            envelopes = await outbox_envelopes(database)
            assert {topic for topic, _ in envelopes} <= {"inventory"}
            return [(e.type, e.key, e.payload, e.headers) for _, e in envelopes]

        yield Stores(
            database, SqlProducts(), SqlReservations(), OutboxMessages(), published_in_outbox
        )


def product(sku: str, stock: int = 5, price: int = 1500, currency: str = "EUR") -> Product:
    return Product(sku, f"Product {sku}", price, currency, stock, 0, NOW, NOW)


async def add(stores: Stores, *items: Product) -> None:
    async with stores.db.transaction() as tx:
        for item in items:
            await stores.products.add(tx, item)


async def get(stores: Stores, sku: str) -> Product | None:
    async with stores.db.connect() as tx:
        return await stores.products.get(tx, sku)


async def levels(stores: Stores, sku: str) -> tuple[int, int]:
    found = await get(stores, sku)
    assert found is not None
    return found.on_hand, found.reserved


def reservation(order_id: str, *lines: tuple[str, int], expires_in: float = 60) -> Reservation:
    return Reservation(
        order_id=order_id,
        status=ReservationStatus.RESERVED,
        lines=tuple(lines),
        shortages=(),
        created_at=NOW,
        expires_at=NOW + timedelta(seconds=expires_in),
        correlation_id="saga-1",
    )


async def test_a_product_is_kept_as_given_and_a_taken_sku_leaves_the_transaction_usable(stores):
    tee = product("tee-m")
    await add(stores, tee)
    assert await get(stores, "tee-m") == tee
    async with stores.db.transaction() as tx:
        with pytest.raises(SkuTaken):
            await stores.products.add(tx, product("tee-m", stock=99))
        await stores.products.add(tx, product("mug"))
    assert await levels(stores, "tee-m") == (5, 0)
    assert await get(stores, "mug") is not None
    assert await get(stores, "nothing") is None


async def test_products_page_in_byte_order_of_their_skus(stores):
    skus = ["b-2", "B", "a.1", "b", "a-1", "a_1", "10", "9"]
    await add(stores, *(product(sku) for sku in skus))
    async with stores.db.connect() as tx:
        first = await stores.products.page(tx, None, 5)
        rest = await stores.products.page(tx, first[-1].sku, 5)
        some = await stores.products.get_many(tx, ["b", "zzz", "9"])
    assert [p.sku for p in first + rest] == sorted(skus)
    assert sorted(some) == ["9", "b"]


async def test_an_update_changes_only_the_given_fields(stores):
    await add(stores, product("tee-m"))
    later = NOW + timedelta(hours=1)
    async with stores.db.transaction() as tx:
        changed = await stores.products.update(tx, "tee-m", later, price_cents=1800)
        missing = await stores.products.update(tx, "nothing", later, name="x")
    assert changed is not None and missing is None
    assert (changed.name, changed.price_cents, changed.updated_at) == ("Product tee-m", 1800, later)
    assert await get(stores, "tee-m") == changed


async def test_an_adjustment_applies_only_while_it_keeps_what_is_reserved(stores):
    await add(stores, product("tee-m", stock=5))
    async with stores.db.transaction() as tx:
        assert await stores.products.reserve(tx, [("tee-m", 3)]) == ()

    def adjustment(delta: int) -> StockAdjustment:
        return StockAdjustment(f"adj-{delta}", "tee-m", delta, "count", "admin", NOW)

    async with stores.db.transaction() as tx:
        assert not await stores.products.adjust(tx, adjustment(-3))
        assert await stores.products.adjust(tx, adjustment(-2))
        assert not await stores.products.adjust(
            tx, StockAdjustment("adj-x", "nothing", 1, "x", "admin", NOW)
        )
    assert await levels(stores, "tee-m") == (3, 3)


async def test_a_reservation_takes_every_line_or_none_and_names_every_short_sku(stores):
    await add(stores, product("a", stock=2), product("b", stock=1), product("c", stock=4))
    async with stores.db.transaction() as tx:
        short = await stores.products.reserve(tx, [("a", 2), ("b", 2), ("c", 1), ("z", 1)])
    assert short == ("b", "z")
    assert [await levels(stores, sku) for sku in "abc"] == [(2, 0), (1, 0), (4, 0)]
    async with stores.db.transaction() as tx:
        assert await stores.products.reserve(tx, [("a", 2), ("b", 1)]) == ()
        assert await stores.products.reserve(tx, [("a", 1)]) == ("a",)
    assert [await levels(stores, sku) for sku in "ab"] == [(2, 2), (1, 1)]


async def test_unreserved_units_come_back_and_shipped_units_leave(stores):
    await add(stores, product("a", stock=5))
    async with stores.db.transaction() as tx:
        await stores.products.reserve(tx, [("a", 4)])
        await stores.products.unreserve(tx, [("a", 1)])
        await stores.products.ship(tx, [("a", 2)])
    assert await levels(stores, "a") == (3, 1)


async def test_a_rolled_back_transaction_keeps_nothing(stores):
    await add(stores, product("a", stock=5))
    with pytest.raises(RuntimeError):
        async with stores.db.transaction() as tx:
            await stores.products.reserve(tx, [("a", 4)])
            await stores.reservations.add(tx, reservation("o-1", ("a", 4)))
            await stores.messages.publish(tx, StockReleased("o-1"), Cause("saga-1", "m-1"))
            raise RuntimeError("the handler failed")
    assert await levels(stores, "a") == (5, 0)
    async with stores.db.connect() as tx:
        assert await stores.reservations.get(tx, "o-1") is None
    assert await stores.published() == []


async def test_one_reservation_per_order(stores):
    held = reservation("o-1", ("a", 2), ("b", 1))
    async with stores.db.transaction() as tx:
        await stores.reservations.add(tx, held)
    async with stores.db.connect() as tx:
        assert await stores.reservations.get(tx, "o-1") == held
    with pytest.raises(Exception):  # noqa: B017 - the SQL store's is the database's own error
        async with stores.db.transaction() as tx:
            await stores.reservations.add(tx, reservation("o-1", ("a", 1)))
    failed = Reservation(
        "o-2", ReservationStatus.FAILED, (("a", 9),), ("a",), NOW, None, correlation_id=None
    )
    async with stores.db.transaction() as tx:
        await stores.reservations.add(tx, failed)
        assert await stores.reservations.get(tx, "o-2") == failed
        assert await stores.reservations.get(tx, "o-1") == held


async def test_a_reservation_is_settled_once(stores):
    async with stores.db.transaction() as tx:
        await stores.reservations.add(tx, reservation("o-1", ("a", 2)))
    later = NOW + timedelta(seconds=5)
    async with stores.db.transaction() as tx:
        settled = await stores.reservations.settle(tx, "o-1", ReservationStatus.RELEASED, later)
        again = await stores.reservations.settle(tx, "o-1", ReservationStatus.EXPIRED, later)
        none = await stores.reservations.settle(tx, "o-9", ReservationStatus.RELEASED, later)
    assert settled is not None and again is None and none is None
    assert (settled.status, settled.settled_at, settled.lines) == (
        ReservationStatus.RELEASED,
        later,
        (("a", 2),),
    )


async def test_expired_reservations_are_those_held_past_their_deadline_oldest_first(stores):
    async with stores.db.transaction() as tx:
        await stores.reservations.add(tx, reservation("late", ("a", 1), expires_in=30))
        await stores.reservations.add(tx, reservation("early", ("a", 1), expires_in=10))
        await stores.reservations.add(tx, reservation("later", ("a", 1), expires_in=90))
        await stores.reservations.add(tx, reservation("gone", ("a", 1), expires_in=5))
        await stores.reservations.settle(tx, "gone", ReservationStatus.RELEASED, NOW)
    async with stores.db.connect() as tx:
        due = await stores.reservations.expired(tx, NOW + timedelta(seconds=30), 10)
        one = await stores.reservations.expired(tx, NOW + timedelta(seconds=30), 1)
    assert due == ["early", "late"]
    assert one == ["early"]


async def test_a_message_is_handled_once_per_group_and_answers_carry_their_cause(stores):
    async with stores.db.transaction() as tx:
        assert await stores.messages.first_delivery(tx, "g", "m-1")
        assert not await stores.messages.first_delivery(tx, "g", "m-1")
        assert await stores.messages.first_delivery(tx, "other", "m-1")
        await stores.messages.publish(
            tx, StockReservationFailed("o-1", ("a", "b")), Cause("saga-1", "m-1")
        )
        await stores.messages.publish(tx, StockReleased("o-2"), Cause("saga-2"))
    assert await stores.published() == [
        (
            StockReservationFailed.type,
            "o-1",
            {"order_id": "o-1", "skus": ["a", "b"]},
            {"correlation_id": "saga-1", "causation_id": "m-1"},
        ),
        (StockReleased.type, "o-2", {"order_id": "o-2"}, {"correlation_id": "saga-2"}),
    ]
