"""Shipping's bus entry points: the consumer group `shipping.commands` on its command topic,
which hands `CreateShipment` and `CancelShipment` to the service (orchestration); the group
`shipping.orders` on orders' topic, which dispatches the parcel of each `OrderConfirmed` (both
modes); and the group `shipping.choreography` on the events of orders and payments
(choreography)."""

from __future__ import annotations

from townhall.orders import events as orders
from townhall.payments import events as payments
from townhall.platform.messaging import ConsumerSpec, Envelope, Handler
from townhall.platform.observability import get_logger
from townhall.shipping.choreography import ShippingChoreography
from townhall.shipping.events import COMMAND_TOPIC, CancelShipment, CreateShipment
from townhall.shipping.ports import Received
from townhall.shipping.service import ShippingService

GROUP = "shipping.commands"
ORDERS_GROUP = "shipping.orders"
CHOREOGRAPHY_GROUP = "shipping.choreography"
CANCEL_ATTEMPTS_FACTOR = 4

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
        if envelope.type != orders.OrderConfirmed.type:
            return
        confirmed = orders.OrderConfirmed.from_payload(envelope.payload)
        await service.dispatch(
            confirmed.order_id, confirmed.buyer_id, received(envelope, max_attempts)
        )

    return ConsumerSpec(
        orders.TOPIC, ORDERS_GROUP, lambda: on_order, prefetch=prefetch, max_attempts=max_attempts
    )


def choreography_consumers(
    choreography: ShippingChoreography, *, max_attempts: int, prefetch: int = 100
) -> list[ConsumerSpec]:
    async def handle(envelope: Envelope) -> None:
        payload = envelope.payload
        order_id = payload.get("order_id") if isinstance(payload, dict) else None
        if not isinstance(order_id, str):
            return
        if envelope.type == orders.OrderPlaced.type:
            await choreography.on_order_placed(
                orders.OrderPlaced.from_payload(payload), received(envelope, max_attempts)
            )
        elif envelope.type == payments.PaymentCaptured.type:
            await choreography.on_payment_captured(order_id, received(envelope, max_attempts))
        elif envelope.type == orders.OrderCancelRequested.type:
            await choreography.on_cancel_requested(order_id, received(envelope, max_attempts))

    # A cancel that meets a booking under way waits for it (`NotYet`, 1 s at a time, the
    # carrier's call may take 10 s) and must not run out of attempts first.
    attempts = {orders.TOPIC: max_attempts * CANCEL_ATTEMPTS_FACTOR}
    return [
        ConsumerSpec(
            topic,
            CHOREOGRAPHY_GROUP,
            lambda: handle,
            prefetch=prefetch,
            max_attempts=attempts.get(topic, max_attempts),
        )
        for topic in (orders.TOPIC, payments.TOPIC)
    ]
