"""What the Stripe gateway sends and how it reads Stripe's answers that only HTTP has: outages,
rate limits, lost answers, refused keys, and the retry after a processing error.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest

from support.provider_servers import Reply
from support.stripe_server import SECRET_KEY, StripeLikeServer
from townhall.payments.adapters.stripe import StripePaymentGateway
from townhall.payments.domain import Captured, Declined, Permanent, Refunded, Transient

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server() -> AsyncIterator[StripeLikeServer]:
    server = StripeLikeServer(hang_for=0.5)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway(server) -> AsyncIterator[StripePaymentGateway]:
    gateway = StripePaymentGateway(SECRET_KEY, base_url=server.url, timeout=0.25)
    yield gateway
    await gateway.aclose()


async def capture(gateway, card="4242424242424242", key="order-1:capture"):
    return await gateway.capture(
        amount_cents=2500,
        currency="EUR",
        payment_method=card,
        idempotency_key=key,
        description="order 1",
    )


async def test_a_capture_creates_then_confirms_a_payment_intent_with_stripes_test_method(
    gateway, server
):
    outcome = await capture(gateway)

    create, confirm = server.requests
    assert (create.method, create.path) == ("POST", "/v1/payment_intents")
    assert create.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert create.headers["content-type"] == "application/x-www-form-urlencoded"
    assert create.headers["idempotency-key"] == "order-1:capture"
    form = parse_qs(create.body.decode())
    assert form["amount"] == ["2500"]
    assert form["currency"] == ["eur"]
    assert form["payment_method"] == ["pm_card_visa"]
    assert form["description"] == ["order 1"]
    assert confirm.path == f"/v1/payment_intents/{outcome.payment_id}/confirm"
    assert confirm.headers["idempotency-key"].startswith("order-1:capture:")


async def test_a_refund_posts_to_stripe_refunds_with_its_key(gateway, server):
    payment_id = (await capture(gateway)).payment_id

    await gateway.refund(payment_id=payment_id, amount_cents=700, idempotency_key="order-1:refund")

    refund = server.requests[-1]
    assert (refund.method, refund.path) == ("POST", "/v1/refunds")
    assert refund.headers["idempotency-key"] == "order-1:refund"
    assert parse_qs(refund.body.decode()) == {"payment_intent": [payment_id], "amount": ["700"]}


async def test_a_pm_id_is_sent_to_stripe_as_it_is(gateway, server):
    outcome = await capture(gateway, card="pm_card_chargeDeclinedInsufficientFunds")

    assert outcome == Declined("insufficient_funds", outcome.message)
    assert parse_qs(server.requests[0].body.decode())["payment_method"] == [
        "pm_card_chargeDeclinedInsufficientFunds"
    ]


async def test_a_card_number_that_is_no_test_card_never_reaches_stripe(gateway, server):
    await capture(gateway, card="4111111111111111")

    assert server.requests == []


async def test_a_retry_after_a_processing_error_confirms_again_under_a_new_key(gateway, server):
    await capture(gateway, card="4000000000000119")
    await capture(gateway, card="4000000000000119")

    confirms = [r for r in server.requests if r.path.endswith("/confirm")]
    assert len(confirms) == 2
    assert len({r.headers["idempotency-key"] for r in confirms}) == 2
    assert len(server.intents) == 1  # one intent, so at most one charge whatever the retries


async def test_a_retried_success_reads_the_intent_and_does_not_confirm_twice(gateway, server):
    first = await capture(gateway)
    retried = await capture(gateway)

    assert retried == first
    assert [r.path for r in server.requests if r.path.endswith("/confirm")] == [
        f"/v1/payment_intents/{first.payment_id}/confirm"
    ]


async def test_a_confirm_whose_answer_was_lost_is_captured_once_by_the_retry(gateway, server):
    server.late.append("confirm")  # Stripe charges, the answer arrives after our timeout

    lost = await capture(gateway)
    retried = await capture(gateway)

    assert isinstance(lost, Transient)
    assert lost.error.startswith("timeout")
    assert isinstance(retried, Captured)
    assert server.captured_cents == 2500


async def test_a_create_whose_answer_was_lost_makes_one_intent_on_retry(gateway, server):
    server.late.append("payment_intents")

    lost = await capture(gateway)
    retried = await capture(gateway)

    assert isinstance(lost, Transient)
    assert isinstance(retried, Captured)
    assert len(server.intents) == 1
    assert server.captured_cents == 2500


async def test_rate_limiting_is_transient_with_stripes_retry_hint_and_the_retry_captures(
    gateway, server
):
    server.replies.append(Reply(429, {"error": {"type": "rate_limit_error"}}, {"Retry-After": "2"}))

    limited = await capture(gateway)
    retried = await capture(gateway)

    assert isinstance(limited, Transient)
    assert limited.retry_after == 2.0
    assert isinstance(retried, Captured)
    assert server.captured_cents == 2500


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_stripe_outage_is_transient(gateway, server, status):
    server.replies.append(Reply(status, {"error": {"type": "api_error", "message": "down"}}))

    outcome = await capture(gateway)

    assert isinstance(outcome, Transient)
    assert str(status) in outcome.error


async def test_a_refund_during_an_outage_is_transient_and_its_retry_refunds_once(gateway, server):
    payment_id = (await capture(gateway)).payment_id
    server.replies.append(Reply(503))

    down = await gateway.refund(payment_id=payment_id, amount_cents=2500, idempotency_key="r")
    retried = await gateway.refund(payment_id=payment_id, amount_cents=2500, idempotency_key="r")

    assert isinstance(down, Transient)
    assert isinstance(retried, Refunded)
    assert len(server.refunds) == 1


async def test_an_unreachable_stripe_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = StripePaymentGateway(SECRET_KEY, base_url=f"http://127.0.0.1:{port}")

    outcome = await capture(gateway)
    refund = await gateway.refund(payment_id="pi_1", amount_cents=1, idempotency_key="r")
    await gateway.aclose()

    assert isinstance(outcome, Transient)
    assert isinstance(refund, Transient)


async def test_a_wrong_secret_key_is_permanent(server):
    gateway = StripePaymentGateway("sk_test_wrong", base_url=server.url)

    outcome = await capture(gateway)
    await gateway.aclose()

    assert isinstance(outcome, Permanent)
    assert "Invalid API Key" in outcome.message


async def test_an_invalid_request_is_permanent_with_stripes_code(gateway, server):
    server.replies.append(
        Reply(400, {"error": {"type": "invalid_request_error", "code": "parameter_unknown"}})
    )

    outcome = await capture(gateway)

    assert outcome == Permanent("parameter_unknown", "")


async def test_a_success_answer_without_an_intent_is_transient(gateway, server):
    server.replies.append(Reply(200, {"unexpected": True}))

    outcome = await capture(gateway)

    assert isinstance(outcome, Transient)
