"""Payments' bus entry point: the consumer group `payments.commands` on its command topic,
which hands `CapturePayment` and `RefundPayment` to the service."""

from __future__ import annotations

from townhall.payments.events import COMMAND_TOPIC, CapturePayment, RefundPayment
from townhall.payments.ports import Received
from townhall.payments.service import PaymentService
from townhall.platform.messaging import ConsumerSpec, Envelope, Handler
from townhall.platform.observability import get_logger

GROUP = "payments.commands"

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
