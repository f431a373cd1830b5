"""What a buyer is told about their order: the notification that each of orders' and shipping's
public events asks for (in-app and email, a template and its data), with a failure's reason in
words. Pure: an event's type and payload in, a `NotificationRequested` (or nothing) out.

Only the modules' `events.py` are read here, never their internals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from townhall.notifications.events import NotificationRequested
from townhall.orders import events as orders
from townhall.shipping import events as shipping

CATEGORY = "orders"
# In-app always; email when the buyer has an address (the email worker skips a delivery to a
# buyer without one: `no_contact_point`).
CHANNELS = ("in_app", "email")

# `orders.OrderFailed.reason`, in words (after "We could not complete your order X: ").
REASONS: Mapping[str, str] = {
    "out_of_stock": "an item you ordered is out of stock",
    "stock_timeout": "we could not set your items aside in time",
    "payment_declined": "your payment was declined",
    "payment_timeout": "your payment did not go through in time",
    "shipping_failed": "the carrier cannot deliver to your address",
    "shipping_timeout": "the carrier did not answer in time",
}

# A payment provider's `decline_code` (Stripe's, which the simulator uses too), in words. A
# lost or stolen card is told as a plain decline, as card networks ask.
DECLINES: Mapping[str, str] = {
    "card_declined": "your card was declined",
    "generic_decline": "your card was declined",
    "insufficient_funds": "your card has insufficient funds",
    "incorrect_number": "your card number is incorrect",
    "invalid_number": "your card number is incorrect",
    "expired_card": "your card has expired",
    "incorrect_cvc": "your card's security code is incorrect",
    "processing_error": "an error occurred while processing your card",
    "lost_card": "your card was declined",
    "stolen_card": "your card was declined",
    "provider_unavailable": "the payment service did not answer",
}


def reason_in_words(reason: str, decline_code: str | None = None) -> str:
    """`payment_declined` with a known `decline_code` says why the card was declined; an
    unknown code is named after the decline; an unknown reason is told as a failure."""
    if reason == "payment_declined" and decline_code:
        known = DECLINES.get(decline_code)
        return known or f"{REASONS[reason]} (code {decline_code})"
    return REASONS.get(reason, "something went wrong on our side")


def money(cents: int, currency: str) -> str:
    """`1500, "EUR"` -> `15.00 EUR` (two decimals, as the prices are kept in cents)."""
    sign = "-" if cents < 0 else ""
    whole, fraction = divmod(abs(cents), 100)
    return f"{sign}{whole}.{fraction:02d} {currency}"


def _request(
    buyer_id: str, order_id: str, what: str, data: dict[str, Any]
) -> NotificationRequested:
    return NotificationRequested(
        recipient=buyer_id,
        channels=list(CHANNELS),
        category=CATEGORY,
        template=f"order_{what}",
        data={"order_id": order_id, **data},
        # One notice per order and fact: a redelivered or republished event finds the key
        # taken and creates nothing new.
        idempotency_key=f"order:{order_id}:{what}",
    )


def _confirmed(payload: Mapping[str, Any]) -> NotificationRequested:
    event = orders.OrderConfirmed.from_payload(payload)
    total = money(event.total_cents, event.currency)
    return _request(event.buyer_id, event.order_id, "confirmed", {"total": total})


def _failed(payload: Mapping[str, Any]) -> NotificationRequested:
    event = orders.OrderFailed.from_payload(payload)
    reason = reason_in_words(event.reason, event.decline_code)
    return _request(event.buyer_id, event.order_id, "failed", {"reason": reason})


def _cancelled(payload: Mapping[str, Any]) -> NotificationRequested:
    event = orders.OrderCancelled.from_payload(payload)
    return _request(event.buyer_id, event.order_id, "cancelled", {})


def _shipped(payload: Mapping[str, Any]) -> NotificationRequested | None:
    event = shipping.ShipmentDispatched.from_payload(payload)
    if not event.buyer_id:
        return None  # nobody to tell: the caller logs it
    return _request(event.buyer_id, event.order_id, "shipped", {"tracking": event.tracking})


NOTICES: Mapping[str, Callable[[Mapping[str, Any]], NotificationRequested | None]] = {
    orders.OrderConfirmed.type: _confirmed,
    orders.OrderFailed.type: _failed,
    orders.OrderCancelled.type: _cancelled,
    shipping.ShipmentDispatched.type: _shipped,
}
TOPICS = (orders.TOPIC, shipping.TOPIC)


def notice_for(message_type: str, payload: Mapping[str, Any]) -> NotificationRequested | None:
    """The notification an event asks for; None for any other message on those topics."""
    notice = NOTICES.get(message_type)
    return None if notice is None else notice(payload)
