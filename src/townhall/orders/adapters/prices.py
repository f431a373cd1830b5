"""`InventoryPrices`: the `Prices` port on inventory's facade (its `quote`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from townhall.orders.domain import OrderLine
from townhall.orders.ports import PricedBasket

if TYPE_CHECKING:  # inventory imports orders' events, which imports this package
    from townhall.inventory import InventoryFacade


class InventoryPrices:
    def __init__(self, inventory: InventoryFacade) -> None:
        self._inventory = inventory

    async def price(self, lines: Sequence[tuple[str, int]]) -> PricedBasket:
        quote = await self._inventory.quote(lines)
        return PricedBasket(
            [OrderLine(line.sku, line.quantity, line.unit_price_cents) for line in quote.lines],
            quote.currency,
        )
