"""Inventory: products, stock and the reservations orders hold on it (issue 21).

Other modules reach it through `townhall.inventory.events` (the commands it takes and the events
it publishes) and, for prices, through `InventoryFacade.quote`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from townhall.inventory.adapters.outbox import OutboxMessages
from townhall.inventory.adapters.sql import (
    SqlChoreographedOrders,
    SqlProducts,
    SqlReservations,
)
from townhall.inventory.choreography import StockChoreography
from townhall.inventory.consumers import InventoryConsumers
from townhall.inventory.domain import Quote, QuotedLine
from townhall.inventory.http import routers
from townhall.inventory.service import Catalogue, ReservationExpiry, Stock
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["InventoryFacade", "Quote", "QuotedLine", "module"]


class InventoryFacade:
    """The synchronous call other modules may make into inventory (read-only): the current
    prices of a basket, so orders compute a buyer's total without reading inventory's
    tables."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._catalogue = catalogue

    async def quote(self, lines: Sequence[tuple[str, int]]) -> Quote:
        """Each line's (sku, quantity) current unit price, and the basket's one currency.
        Raises `townhall.platform.errors.Invalid` (a 422 at the edge) naming `items.N.sku` for
        a sku no product has, and `items` for an empty basket or one priced in several
        currencies. Stock is not checked: the reservation is where that is decided."""
        return await self._catalogue.quote(lines)


class _Expiry:
    """The expiry loop, as a task of the process running the module."""

    def __init__(self, expiry: ReservationExpiry) -> None:
        self._expiry = expiry
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._expiry.run(), name="inventory-expire-reservations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _install(platform: Platform) -> Installed:
    settings, database, clock = platform.settings, platform.database, platform.clock
    products = SqlProducts()
    catalogue = Catalogue(database, products, clock)
    stock = Stock(
        database,
        products,
        SqlReservations(),
        OutboxMessages(),
        clock,
        ttl=timedelta(seconds=settings.inventory_reservation_ttl),
    )
    expiry = _Expiry(ReservationExpiry(stock, interval=settings.inventory_expiry_interval))
    return Installed(
        routers=routers(catalogue),
        facade=InventoryFacade(catalogue),
        consumers=InventoryConsumers(
            stock, StockChoreography(database, SqlChoreographedOrders(), stock, clock)
        ).specs(),
        on_start=[expiry.start],
        on_stop=[expiry.stop],
    )


module = ModuleSpec(
    name="inventory", install=_install, migrations=Path(__file__).parent / "migrations"
)
