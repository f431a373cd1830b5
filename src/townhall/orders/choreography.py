"""The choreography's one decision on the orders side, pure: given the facts an order holds,
has it ended, and how? No coordinator sends anything; the orders module only records the
participants' facts and ends the order once they say it is over (issue 21).

The ends are those of the orchestration, for the same scenario: CONFIRMED once stock is
reserved, the payment captured and the shipment created; FAILED once the compensations the
failure calls for are done (out of stock: none; a failed payment: the stock released; a
failed shipment: the payment refunded and the stock released); CANCELLED once every
participant answered the cancel request with its compensation.
"""

from __future__ import annotations

from townhall.orders.domain import (
    FailureReason,
    Order,
    OrderEvent,
    OrderStatus,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from townhall.orders.saga import Outcome
from townhall.payments.events import PAYMENT_TIMEOUT


def _holds(order: Order, *facts: type[OrderEvent]) -> bool:
    return all(order.holds(fact) for fact in facts)


def decide(order: Order, decline_code: str | None = None) -> Outcome | None:
    """The order's end, once its facts make one; None while it runs (or once it ended).
    `decline_code` is that of its `PaymentFailed`, when it holds one."""
    if order.status.is_terminal:
        return None
    if order.cancel_requested:
        # Every participant answers a cancel request, whatever it had done.
        if _holds(order, StockReleased, PaymentRefunded, ShipmentCancelled):
            return Outcome(OrderStatus.CANCELLED)
        return None
    if order.holds(StockReservationFailed):
        return Outcome(OrderStatus.FAILED, FailureReason.OUT_OF_STOCK)
    # Each failure waits for the facts before it too (they are its causes, heard on other
    # topics), so the order's stream holds the whole flow however the bus delivered it.
    if _holds(order, StockReserved, PaymentFailed, StockReleased):
        if decline_code == PAYMENT_TIMEOUT:
            return Outcome(OrderStatus.FAILED, FailureReason.PAYMENT_TIMEOUT)
        return Outcome(OrderStatus.FAILED, FailureReason.PAYMENT_DECLINED, decline_code)
    if _holds(
        order, StockReserved, PaymentCaptured, ShipmentFailed, PaymentRefunded, StockReleased
    ):
        return Outcome(OrderStatus.FAILED, FailureReason.SHIPPING_FAILED)
    if _holds(order, StockReserved, PaymentCaptured, ShipmentCreated):
        # All three still held (a reservation that expired meanwhile is not): else the order
        # waits, and its row's deadline lists it as stuck for a person.
        if order.stock_held and order.money_held and order.shipment_exists:
            return Outcome(OrderStatus.CONFIRMED)
    return None


def cancel_refusal(order: Order) -> str | None:
    """Why the buyer may not cancel the order now; None when they may. Once the payment is
    captured the shipment may be under way (the orchestration refuses once the shipment is
    asked for: the same point of the flow). A cancelled order may be asked again: that is a
    duplicate, not a refusal."""
    if order.status is OrderStatus.CANCELLED:
        return None
    if order.status.is_terminal:
        return f"the order is already {order.status.value}"
    if order.holds(PaymentCaptured):
        return "the payment is captured: the shipment may be under way"
    return None
