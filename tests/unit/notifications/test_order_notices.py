"""The buyer's notices: each orders and shipping event maps to one notification (in-app and
email, its template, the reason in words), the templates render with the data the events give,
and the `notifications.orders` group notifies once per fact of an order, whatever the copies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from support.notification_fakes import FakeDirectory, MemoryNotifications
from townhall.notifications import NotificationsFacade
from townhall.notifications.consumers import ORDERS_GROUP, order_consumers
from townhall.notifications.domain import Channel
from townhall.notifications.order_notices import (
    REASONS,
    money,
    notice_for,
    reason_in_words,
)
from townhall.notifications.service import NotificationService
from townhall.notifications.templates import TemplateRenderer
from townhall.orders import events as orders
from townhall.platform.clock import FrozenClock
from townhall.platform.messaging import Envelope
from townhall.shipping import events as shipping

BUYER = "0193a2b4-0000-7000-8000-0000000000b1"
CONFIRMED = orders.OrderConfirmed("o-1", BUYER, 4150, "EUR")
DECLINED = orders.OrderFailed("o-2", BUYER, "payment_declined", "insufficient_funds")
CANCELLED = orders.OrderCancelled("o-3", BUYER)
SHIPPED = shipping.ShipmentDispatched("o-1", "shp-1", "SIM0042", BUYER)


def envelope(event) -> Envelope:
    return Envelope(type=event.type, key=event.order_id, payload=event.to_payload())


@pytest.mark.parametrize(
    ("event", "template", "data"),
    [
        (CONFIRMED, "order_confirmed", {"order_id": "o-1", "total": "41.50 EUR"}),
        (
            DECLINED,
            "order_failed",
            {"order_id": "o-2", "reason": "your card has insufficient funds"},
        ),
        (CANCELLED, "order_cancelled", {"order_id": "o-3"}),
        (SHIPPED, "order_shipped", {"order_id": "o-1", "tracking": "SIM0042"}),
    ],
    ids=lambda value: getattr(value, "type", None),
)
def test_each_fact_of_an_order_is_one_notice_to_the_buyer_in_app_and_by_email(
    event, template, data
):
    notice = notice_for(event.type, event.to_payload())
    assert notice is not None
    assert (notice.recipient, notice.channels, notice.category) == (
        BUYER,
        ["in_app", "email"],
        "orders",
    )
    assert (notice.template, notice.data) == (template, data)
    kind = template.removeprefix("order_")
    assert notice.idempotency_key == f"order:{event.order_id}:{kind}"
    for channel in (Channel.IN_APP, Channel.EMAIL):
        rendered = TemplateRenderer().render(template, channel, "en", notice.data)
        assert rendered.subject and kind in rendered.subject
        assert all(str(value) in rendered.body for value in data.values())


def test_every_failure_reason_and_decline_is_told_in_words():
    assert reason_in_words("out_of_stock") == "an item you ordered is out of stock"
    assert reason_in_words("payment_declined") == "your payment was declined"
    assert reason_in_words("payment_declined", "card_declined") == "your card was declined"
    assert reason_in_words("payment_declined", "expired_card") == "your card has expired"
    assert reason_in_words("payment_declined", "do_not_honor") == (
        "your payment was declined (code do_not_honor)"
    )
    assert reason_in_words("payment_timeout", "insufficient_funds") == (
        "your payment did not go through in time"  # a code only matters for a decline
    )
    assert reason_in_words("a_reason_from_the_future") == "something went wrong on our side"
    for reason in (
        "out_of_stock",
        "stock_timeout",
        "payment_declined",
        "payment_timeout",
        "shipping_failed",
        "shipping_timeout",
    ):
        assert REASONS[reason] and "_" not in reason_in_words(reason)
    assert money(1500, "EUR") == "15.00 EUR"
    assert money(7, "USD") == "0.07 USD"


def test_other_messages_and_a_dispatch_without_a_buyer_ask_for_nothing():
    placed = orders.OrderCancelRequested("o-1", BUYER)
    assert notice_for(placed.type, placed.to_payload()) is None
    created = shipping.ShipmentCreated("o-1", "shp-1")
    assert notice_for(created.type, created.to_payload()) is None
    anonymous = shipping.ShipmentDispatched("o-1", "shp-1", "SIM0042")
    assert notice_for(anonymous.type, anonymous.to_payload()) is None


async def test_the_group_notifies_once_per_fact_whatever_the_copies_of_the_event():
    memory = MemoryNotifications()
    requests, *_ = memory.stores()
    directory = FakeDirectory()
    buyer = directory.add(email="buyer@example.org")
    clock = FrozenClock(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    service = NotificationService(requests, directory, TemplateRenderer(), clock)

    specs = order_consumers(NotificationsFacade(service))
    assert {(spec.topic, spec.group) for spec in specs} == {
        ("orders", ORDERS_GROUP),
        ("shipping", ORDERS_GROUP),
    }
    handler = specs[0].handler_factory()
    confirmed = envelope(orders.OrderConfirmed("o-1", buyer.id, 1500, "EUR"))
    copy = Envelope(type=confirmed.type, key=confirmed.key, payload=confirmed.payload)
    for message in (confirmed, confirmed, copy):  # redelivered, then republished
        await handler(message)
    await handler(envelope(shipping.ShipmentDispatched("o-1", "shp-1", "SIM1", buyer.id)))
    await handler(envelope(shipping.ShipmentDispatched("o-1", "shp-1", "SIM1")))  # no buyer
    await handler(envelope(shipping.ShipmentCreated("o-1", "shp-1")))

    notifications = list(memory.notifications.values())
    assert sorted(n.notification.content.template for n in notifications) == [
        "order_confirmed",
        "order_shipped",
    ]
    for stored in notifications:
        assert str(stored.notification.recipient) == buyer.id
        assert set(stored.notification.deliveries) == {Channel.IN_APP, Channel.EMAIL}
