"""Payments over the bus, as the saga drives it: a command envelope on `payments.commands`, the
event out on `payments` with the saga's correlation id; on SQLite + the in-process bus and on
PostgreSQL + RabbitMQ. The Stripe gateway runs against the local Stripe-like server."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from support.participants import STACKS, participants, send, stack_urls
from support.stripe_server import SECRET_KEY, StripeLikeServer
from townhall.payments.adapters.tables import payments
from townhall.payments.events import (
    COMMAND_TOPIC,
    TOPIC,
    CapturePayment,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RefundPayment,
)

pytestmark = pytest.mark.timeout(90)

SUCCEEDS = "4242424242424242"
DECLINED = "4000000000000002"
PROCESSING_ERROR = "4000000000000119"


@pytest.fixture(params=list(STACKS))
async def stack(request, tmp_path):
    async with stack_urls(request.param, tmp_path) as urls:
        yield urls


@pytest.fixture
async def stripe():
    server = StripeLikeServer()
    await server.start()
    yield server
    await server.stop()


def capture_of(order_id: str, card: str = SUCCEEDS) -> CapturePayment:
    return CapturePayment(order_id, 7000, "EUR", card, f"order-{order_id}.capture_payment")


async def stored(runtime, order_id: str):
    async with runtime.platform.database.connect() as conn:
        query = sa.select(payments).where(payments.c.order_id == order_id)
        return (await conn.execute(query)).first()


async def test_a_capture_command_comes_out_as_payment_captured_in_the_sagas_correlation(
    stack, tmp_path
):
    async with participants(stack, tmp_path, TOPIC) as (runtime, replies):
        command = await send(runtime, COMMAND_TOPIC, capture_of("o-1"))
        [reply] = await replies.at_least(1)

        assert reply.type == PaymentCaptured.type and reply.key == "o-1"
        event = PaymentCaptured.from_payload(reply.payload)
        assert (event.amount_cents, event.currency) == (7000, "EUR")
        assert reply.headers["correlation_id"] == "saga-o-1"
        assert reply.headers["causation_id"] == str(command.id)
        row = await stored(runtime, "o-1")
        assert (row.status, row.payment_id, row.amount_cents) == (
            "captured",
            event.payment_id,
            7000,
        )


async def test_a_declined_card_comes_out_as_payment_failed_with_its_code(stack, tmp_path):
    async with participants(stack, tmp_path, TOPIC) as (runtime, replies):
        await send(runtime, COMMAND_TOPIC, capture_of("o-2", DECLINED))
        [reply] = await replies.at_least(1)
        assert PaymentFailed.from_payload(reply.payload) == PaymentFailed("o-2", "card_declined")


async def test_a_provider_that_keeps_failing_is_retried_then_answered_failed(stack, tmp_path):
    # The bus retries the transient answer (short backoffs in tests); the last attempt
    # answers, so the saga hears a failure instead of a silent dead letter.
    async with participants(stack, tmp_path, TOPIC, payments_max_attempts=3) as (
        runtime,
        replies,
    ):
        await send(runtime, COMMAND_TOPIC, capture_of("o-3", PROCESSING_ERROR))
        [reply] = await replies.at_least(1)
        assert PaymentFailed.from_payload(reply.payload) == PaymentFailed(
            "o-3", "provider_unavailable"
        )
        assert await runtime.platform.bus.dead_letters(COMMAND_TOPIC, "payments.commands") == []


async def test_duplicate_commands_charge_stripe_once_and_refunds_give_it_back_once(
    stack, tmp_path, stripe
):
    settings = {
        "payments_gateway": "stripe",
        "stripe_url": stripe.url,
        "stripe_secret_key": SECRET_KEY,
    }
    async with participants(stack, tmp_path, TOPIC, **settings) as (runtime, replies):
        first = await send(runtime, COMMAND_TOPIC, capture_of("o-4"))
        await send(runtime, COMMAND_TOPIC, capture_of("o-4"))  # the same command sent again
        await send(runtime, COMMAND_TOPIC, None, envelope=first)  # and a redelivery
        captured = await replies.at_least(2)
        payment_ids = {PaymentCaptured.from_payload(r.payload).payment_id for r in captured}
        assert len(payment_ids) == 1
        assert stripe.captured_cents == 7000

        [payment_id] = payment_ids
        refund = RefundPayment("o-4", payment_id, 7000, "EUR", "order-o-4.refund_payment")
        await send(runtime, COMMAND_TOPIC, refund)
        await send(runtime, COMMAND_TOPIC, refund)
        replies_now = await replies.at_least(4)
        refunded = [r for r in replies_now if r.type == PaymentRefunded.type]
        assert [PaymentRefunded.from_payload(r.payload) for r in refunded] == [
            PaymentRefunded("o-4", payment_id, 7000, "EUR")
        ] * 2
        assert len(stripe.refunds) == 1
        await asyncio.sleep(0.2)  # nothing more comes: the redelivery was answered once
        assert len(replies.received) == 4
        row = await stored(runtime, "o-4")
        assert (row.status, row.refunded_cents) == ("refunded", 7000)
