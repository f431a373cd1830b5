"""One contract for every PaymentGateway adapter: the simulator, and the Stripe adapter against a
local server that answers (and enforces idempotency keys) as Stripe does.

Every test card gives its outcome, a retry with the same key never charges or refunds twice and
answers the same, the same key for another request is an `idempotency_error`, and the card that
never answers is bounded by the caller's `asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from support.stripe_server import SECRET_KEY, StripeLikeServer
from townhall.payments.adapters.simulator import NEVER_ANSWERING_CARD, SimulatedPaymentGateway
from townhall.payments.adapters.stripe import StripePaymentGateway
from townhall.payments.domain import (
    ALREADY_REFUNDED,
    AMOUNT_TOO_LARGE,
    IDEMPOTENCY_ERROR,
    UNKNOWN_PAYMENT,
    Captured,
    Declined,
    Permanent,
    Refunded,
    Transient,
)

pytestmark = pytest.mark.timeout(30)

SUCCEEDS = "4242424242424242"
DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
PROCESSING_ERROR = "4000000000000119"


@dataclass
class Case:
    gateway: Any
    # Money the provider side actually took, and how many refunds it made.
    captured_cents: Callable[[], int]
    refund_count: Callable[[], int]


@pytest.fixture(params=["simulator", "stripe"])
async def case(request) -> AsyncIterator[Case]:
    if request.param == "simulator":
        simulator = SimulatedPaymentGateway(no_answer_after=10.0)
        yield Case(
            simulator,
            lambda: sum(p.amount_cents for p in simulator.payments.values()),
            lambda: len(simulator.refunds),
        )
        return
    server = StripeLikeServer(hang_for=0.5)
    await server.start()
    gateway = StripePaymentGateway(SECRET_KEY, base_url=server.url, timeout=5.0)
    try:
        yield Case(gateway, lambda: server.captured_cents, lambda: len(server.refunds))
    finally:
        await gateway.aclose()
        await server.stop()


async def capture(case: Case, card: str, key: str = "order-1:capture", amount: int = 2500):
    return await case.gateway.capture(
        amount_cents=amount,
        currency="EUR",
        payment_method=card,
        idempotency_key=key,
        description="order 1",
    )


async def captured(case: Case, key: str = "order-1:capture", amount: int = 2500) -> str:
    outcome = await capture(case, SUCCEEDS, key, amount)
    assert isinstance(outcome, Captured)
    return outcome.payment_id


# --- the test cards -------------------------------------------------------------------------


async def test_the_succeeding_card_is_captured_with_the_providers_payment_id(case):
    outcome = await capture(case, SUCCEEDS)

    assert isinstance(outcome, Captured)
    assert outcome.payment_id
    assert case.captured_cents() == 2500


@pytest.mark.parametrize(
    ("card", "decline_code"),
    [(DECLINED, "card_declined"), (INSUFFICIENT_FUNDS, "insufficient_funds")],
)
async def test_a_declining_card_is_declined_with_its_code_and_nothing_is_taken(
    case, card, decline_code
):
    outcome = await capture(case, card)

    assert isinstance(outcome, Declined)
    assert outcome.decline_code == decline_code
    assert outcome.message
    assert case.captured_cents() == 0


async def test_the_processing_error_card_fails_transiently_every_time_and_takes_nothing(case):
    first = await capture(case, PROCESSING_ERROR)
    retried = await capture(case, PROCESSING_ERROR)

    assert isinstance(first, Transient)
    assert "processing_error" in first.error
    assert isinstance(retried, Transient)
    assert case.captured_cents() == 0


async def test_a_number_that_is_no_test_card_is_declined_as_an_incorrect_number(case):
    outcome = await capture(case, "1234567812345678")

    assert outcome == Declined("incorrect_number", outcome.message)
    assert case.captured_cents() == 0


async def test_an_unknown_payment_method_id_is_a_permanent_resource_missing(case):
    outcome = await capture(case, "pm_card_unknown")

    assert isinstance(outcome, Permanent)
    assert outcome.code == UNKNOWN_PAYMENT
    assert case.captured_cents() == 0


async def test_the_never_answering_card_is_cut_off_by_the_callers_timeout(case):
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(capture(case, NEVER_ANSWERING_CARD), timeout=0.2)

    assert case.captured_cents() == 0
    # The gateway is still usable once the caller gave up on that call.
    assert isinstance(await capture(case, SUCCEEDS, key="order-2:capture"), Captured)


# --- idempotency of captures ----------------------------------------------------------------


async def test_a_retried_capture_with_the_same_key_charges_once_and_answers_the_same(case):
    first = await capture(case, SUCCEEDS)
    retried = await capture(case, SUCCEEDS)

    assert retried == first
    assert case.captured_cents() == 2500


async def test_captures_under_different_keys_are_different_charges(case):
    first = await captured(case, key="order-1:capture")
    second = await captured(case, key="order-2:capture")

    assert first != second
    assert case.captured_cents() == 5000


async def test_a_retried_decline_with_the_same_key_answers_the_same_decline(case):
    first = await capture(case, INSUFFICIENT_FUNDS)
    retried = await capture(case, INSUFFICIENT_FUNDS)

    assert isinstance(first, Declined)
    assert retried == first


async def test_the_same_key_for_another_amount_is_an_idempotency_error_and_takes_nothing_more(
    case,
):
    await captured(case, amount=2500)
    reused = await capture(case, SUCCEEDS, amount=9900)

    assert isinstance(reused, Permanent)
    assert reused.code == IDEMPOTENCY_ERROR
    assert case.captured_cents() == 2500


# --- refunds --------------------------------------------------------------------------------


async def test_a_refund_gives_the_money_back_once_even_when_retried_with_the_same_key(case):
    payment_id = await captured(case)

    first = await case.gateway.refund(
        payment_id=payment_id, amount_cents=2500, idempotency_key="order-1:refund"
    )
    retried = await case.gateway.refund(
        payment_id=payment_id, amount_cents=2500, idempotency_key="order-1:refund"
    )

    assert isinstance(first, Refunded)
    assert (first.payment_id, first.amount_cents) == (payment_id, 2500)
    assert retried == first
    assert case.refund_count() == 1


async def test_a_second_refund_under_another_key_of_a_refunded_payment_is_refused(case):
    payment_id = await captured(case)
    await case.gateway.refund(payment_id=payment_id, amount_cents=2500, idempotency_key="r-1")

    again = await case.gateway.refund(
        payment_id=payment_id, amount_cents=2500, idempotency_key="r-2"
    )

    assert isinstance(again, Permanent)
    assert again.code == ALREADY_REFUNDED
    assert case.refund_count() == 1


async def test_a_refund_above_what_is_left_to_refund_is_refused(case):
    payment_id = await captured(case)
    partial = await case.gateway.refund(
        payment_id=payment_id, amount_cents=1000, idempotency_key="r-1"
    )

    too_much = await case.gateway.refund(
        payment_id=payment_id, amount_cents=2000, idempotency_key="r-2"
    )

    assert isinstance(partial, Refunded)
    assert isinstance(too_much, Permanent)
    assert too_much.code == AMOUNT_TOO_LARGE
    assert case.refund_count() == 1


async def test_a_refund_of_an_unknown_payment_is_a_permanent_resource_missing(case):
    outcome = await case.gateway.refund(
        payment_id="pi_unknown", amount_cents=2500, idempotency_key="order-1:refund"
    )

    assert isinstance(outcome, Permanent)
    assert outcome.code == UNKNOWN_PAYMENT
    assert case.refund_count() == 0


async def test_the_same_refund_key_for_another_amount_is_an_idempotency_error(case):
    payment_id = await captured(case)
    await case.gateway.refund(payment_id=payment_id, amount_cents=1000, idempotency_key="r-1")

    reused = await case.gateway.refund(
        payment_id=payment_id, amount_cents=1500, idempotency_key="r-1"
    )

    assert isinstance(reused, Permanent)
    assert reused.code == IDEMPOTENCY_ERROR
    assert case.refund_count() == 1
