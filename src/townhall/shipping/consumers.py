"""Shipping's bus entry points: the consumer group `shipping.commands` on its command topic,
which hands `CreateShipment` and `CancelShipment` to the service, and `shipping.orders` on
orders' topic, which dispatches the parcel of each `OrderConfirmed`."""

from __future__ import annotations

from townhall.orders.events import TOPIC as ORDERS_TOPIC
from townhall.orders.events import OrderConfirmed
from townhall.platform.messaging import ConsumerSpec, Envelope, Handler
from townhall.platform.observability import get_logger
from townhall.shipping.events import COMMAND_TOPIC, CancelShipment, CreateShipment
from townhall.shipping.ports import Received
from townhall.shipping.service import ShippingService

GROUP = "shipping.commands"
ORDERS_GROUP = "shipping.orders"

log = get_logger("townhall.shipping")


def received(envelope: Envelope, max_attempts: int) -> Received:
    return Received(
        message_id=str(envelope.id),
        correlation_id=envelope.headers.get("correlation_id", str(envelope.id)),
        final_attempt=envelope.attempt >= max_attempts,
    )


def command_handler(service: ShippingService, *, max_attempts: int) -> Handler:
    async def handle(envelope: Envelope) -> None:
        if envelope.type == CreateShipment.type:
            create = CreateShipment.from_payload(envelope.payload)
            await service.create(create, received(envelope, max_attempts))
        elif envelope.type == CancelShipment.type:
            cancel = CancelShipment.from_payload(envelope.payload)
            await service.cancel(cancel, received(envelope, max_attempts))
        else:
            log.warning("shipping_unknown_command", type=envelope.type, id=str(envelope.id))

    return handle


def command_consumer(
    service: ShippingService, *, max_attempts: int, prefetch: int = 100
) -> ConsumerSpec:
    handler = command_handler(service, max_attempts=max_attempts)
    return ConsumerSpec(
        COMMAND_TOPIC, GROUP, lambda: handler, prefetch=prefetch, max_attempts=max_attempts
    )


def orders_consumer(
    service: ShippingService, *, max_attempts: int, prefetch: int = 100
) -> ConsumerSpec:
    """`OrderConfirmed` -> the parcel is dispatched; other orders events are not shipping's."""

    async def on_order(envelope: Envelope) -> None:
        if envelope.type != OrderConfirmed.type:
            return
        confirmed = OrderConfirmed.from_payload(envelope.payload)
        await service.dispatch(
            confirmed.order_id, confirmed.buyer_id, received(envelope, max_attempts)
        )

    return ConsumerSpec(
        ORDERS_TOPIC, ORDERS_GROUP, lambda: on_order, prefetch=prefetch, max_attempts=max_attempts
    )
