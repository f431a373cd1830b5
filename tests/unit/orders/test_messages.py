"""The saga's public messages: each reads back from its JSON payload, and each names its
module in its type."""

from __future__ import annotations

import json

import pytest

from townhall.inventory import events as inventory
from townhall.orders import events as orders
from townhall.payments import events as payments
from townhall.shipping import events as shipping

ADDRESS = shipping.Address("Ada", "12 Square", "London", "SW1Y 4JH", "GB", line2="Flat 2")
MESSAGES = [
    inventory.ReserveStock("o-1", (inventory.StockLine("tee-m", 2),)),
    inventory.ReleaseStock("o-1"),
    inventory.StockReserved("o-1"),
    inventory.StockReservationFailed("o-1", ("tee-m", "mug")),
    inventory.StockReleased("o-1"),
    payments.CapturePayment("o-1", 7000, "EUR", "4242424242424242", "order-o-1.capture_payment"),
    payments.RefundPayment("o-1", "pay-1", 7000, "EUR", "order-o-1.refund_payment"),
    payments.PaymentCaptured("o-1", "pay-1", 7000, "EUR"),
    payments.PaymentFailed("o-1", "insufficient_funds"),
    payments.PaymentRefunded("o-1", "pay-1", 7000, "EUR"),
    shipping.CreateShipment("o-1", ADDRESS, (shipping.ShippedLine("tee-m", 2),)),
    shipping.CancelShipment("o-1", "ship-1"),
    shipping.ShipmentCreated("o-1", "ship-1"),
    shipping.ShipmentFailed("o-1", "undeliverable"),
    shipping.ShipmentCancelled("o-1", "ship-1"),
    shipping.ShipmentDispatched("o-1", "ship-1", "SIM123", "buyer-1"),
    orders.OrderPlaced(
        "o-1",
        "buyer-1",
        (orders.PlacedLine("tee-m", 2, 1500),),
        3000,
        "EUR",
        orders.ShippingAddress("Ada", "12 Square", "London", "SW1Y 4JH", "GB"),
        "orchestration",
    ),
    orders.OrderCancelRequested("o-1", "buyer-1"),
    orders.OrderConfirmed("o-1", "buyer-1", 3000, "EUR"),
    orders.OrderFailed("o-1", "buyer-1", "payment_declined", "insufficient_funds"),
    orders.OrderCancelled("o-1", "buyer-1"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: message.type)
def test_a_message_reads_back_from_its_json_payload(message):
    payload = json.loads(json.dumps(message.to_payload()))
    assert type(message).from_payload(payload) == message
    assert message.version == 1


def test_each_module_names_its_topics_and_prefixes_its_message_types():
    for module in (inventory, payments, shipping, orders):
        name = module.__name__.split(".")[1]
        assert module.TOPIC == name
        types = [m.type for m in MESSAGES if type(m).__module__ == module.__name__]
        assert types and all(t.startswith(f"{name}.") for t in types)
    assert {inventory.COMMAND_TOPIC, payments.COMMAND_TOPIC, shipping.COMMAND_TOPIC} == {
        "inventory.commands",
        "payments.commands",
        "shipping.commands",
    }
