"""Inventory's part of the order saga in choreography mode (issue 21): no orchestrator sends
it commands. It reserves on `orders.OrderPlaced` (a choreographed one), releases when payments
reports a failure or a refund, and answers a buyer's cancel with `StockReleased` (also when
nothing was reserved: a cancelled order is then never reserved).

Every handler decides by the order's record here (`inventory_choreographed`, written when the
choreographed order is placed): payments' events of an orchestrated order are ignored (its
saga sends `ReleaseStock`). Reserving and releasing are `Stock`'s, idempotent by order id and
deduped per message under the group `inventory.choreography`.
"""

from __future__ import annotations

from townhall.inventory.events import ReleaseStock, ReserveStock, StockLine
from townhall.inventory.ports import Cause, ChoreographedOrders
from townhall.inventory.service import Stock
from townhall.orders.events import OrderPlaced
from townhall.platform.clock import Clock
from townhall.platform.transaction import Transactions

GROUP = "inventory.choreography"
CHOREOGRAPHY = "choreography"


class StockChoreography:
    def __init__(
        self,
        transactions: Transactions,
        orders: ChoreographedOrders,
        stock: Stock,
        clock: Clock,
    ) -> None:
        self._tx = transactions
        self._orders = orders
        self._stock = stock
        self._clock = clock

    async def on_order_placed(self, placed: OrderPlaced, cause: Cause) -> None:
        """Reserve the order's lines: `StockReserved` or `StockReservationFailed`; nothing for
        an orchestrated order or one cancelled already."""
        if placed.saga_mode != CHOREOGRAPHY:
            return
        async with self._tx.transaction() as tx:
            await self._orders.add(tx, placed.order_id, cancelled=False, at=self._clock.now())
            cancelled = await self._orders.get(tx, placed.order_id)
        if cancelled:
            return
        lines = tuple(StockLine(line.sku, line.quantity) for line in placed.lines)
        await self._stock.reserve(ReserveStock(placed.order_id, lines), cause, group=GROUP)

    async def on_payment_undone(self, order_id: str, cause: Cause) -> None:
        """Payments failed or refunded: give the stock back (`StockReleased`)."""
        async with self._tx.connect() as tx:
            known = await self._orders.get(tx, order_id)
        if known is not None:
            await self._stock.release(ReleaseStock(order_id), cause, group=GROUP)

    async def on_cancel_requested(self, order_id: str, cause: Cause) -> None:
        """The buyer cancels: release what the order holds, and never reserve for it later."""
        async with self._tx.transaction() as tx:
            await self._orders.cancel(tx, order_id, self._clock.now())
        await self._stock.release(ReleaseStock(order_id), cause, group=GROUP)
