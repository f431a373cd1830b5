"""Payments' bus entry points: the consumer group `payments.commands` on its command topic,
which hands `CapturePayment` and `RefundPayment` to the service (orchestration), and the group
`payments.choreography` on the events of orders, inventory and shipping (choreography)."""

from __future__ import annotations

from townhall.inventory import events as inventory
from townhall.orders import events as orders
from townhall.payments.choreography import PaymentChoreography
from townhall.payments.events import COMMAND_TOPIC, CapturePayment, RefundPayment
from townhall.payments.ports import Received
from townhall.payments.service import PaymentService
from townhall.platform.messaging import ConsumerSpec, Envelope, Handler
from townhall.platform.observability import get_logger
from townhall.shipping import events as shipping

GROUP = "payments.commands"
CHOREOGRAPHY_GROUP = "payments.choreography"
CANCEL_ATTEMPTS_FACTOR = 4

log = get_logger("townhall.payments")


def received(envelope: Envelope, max_attempts: int) -> Received:
    return Received(
        message_id=str(envelope.id),
        correlation_id=envelope.headers.get("correlation_id", str(envelope.id)),
        final_attempt=envelope.attempt >= max_attempts,
    )


def command_handler(service: PaymentService, *, max_attempts: int) -> Handler:
    async def handle(envelope: Envelope) -> None:
        if envelope.type == CapturePayment.type:
            command = CapturePayment.from_payload(envelope.payload)
            await service.capture(command, received(envelope, max_attempts))
        elif envelope.type == RefundPayment.type:
            refund = RefundPayment.from_payload(envelope.payload)
            await service.refund(refund, received(envelope, max_attempts))
        else:
            log.warning("payments_unknown_command", type=envelope.type, id=str(envelope.id))

    return handle


def command_consumer(
    service: PaymentService, *, max_attempts: int, prefetch: int = 100
) -> ConsumerSpec:
    handler = command_handler(service, max_attempts=max_attempts)
    return ConsumerSpec(
        COMMAND_TOPIC, GROUP, lambda: handler, prefetch=prefetch, max_attempts=max_attempts
    )


def choreography_consumers(
    choreography: PaymentChoreography, *, max_attempts: int, prefetch: int = 100
) -> list[ConsumerSpec]:
    """What payments does on the other modules' events; other messages are not its business
    (and an orchestrated order, unknown to the vault, is ignored by the choreography)."""

    async def handle(envelope: Envelope) -> None:
        order_id = envelope.payload.get("order_id") if isinstance(envelope.payload, dict) else None
        if not isinstance(order_id, str):
            return
        if envelope.type == inventory.StockReserved.type:
            await choreography.on_stock_reserved(order_id, received(envelope, max_attempts))
        elif envelope.type == shipping.ShipmentFailed.type:
            await choreography.on_shipment_failed(order_id, received(envelope, max_attempts))
        elif envelope.type == orders.OrderCancelRequested.type:
            await choreography.on_cancel_requested(order_id, received(envelope, max_attempts))

    # A cancel that meets a capture under way waits for it (`NotYet`, a call timeout at a
    # time) and must not run out of attempts first; a capture's own attempts stay as set.
    attempts = {orders.TOPIC: max_attempts * CANCEL_ATTEMPTS_FACTOR}
    return [
        ConsumerSpec(
            topic,
            CHOREOGRAPHY_GROUP,
            lambda: handle,
            prefetch=prefetch,
            max_attempts=attempts.get(topic, max_attempts),
        )
        for topic in (orders.TOPIC, inventory.TOPIC, shipping.TOPIC)
    ]
