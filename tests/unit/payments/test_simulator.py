"""What only the payment simulator has: the bound on its never-answering card."""

from __future__ import annotations

import asyncio

import pytest

from townhall.payments.adapters.simulator import NEVER_ANSWERING_CARD, SimulatedPaymentGateway
from townhall.payments.domain import Transient

pytestmark = pytest.mark.timeout(10)


def capture(gateway: SimulatedPaymentGateway):
    return gateway.capture(
        amount_cents=100,
        currency="eur",
        payment_method=NEVER_ANSWERING_CARD,
        idempotency_key="k",
    )


async def test_the_never_answering_card_answers_a_timeout_once_its_bound_passes():
    gateway = SimulatedPaymentGateway(no_answer_after=0.05)

    outcome = await capture(gateway)

    assert isinstance(outcome, Transient)
    assert outcome.error.startswith("timeout")
    assert gateway.payments == {}


async def test_without_a_bound_the_never_answering_card_waits_until_it_is_cancelled():
    gateway = SimulatedPaymentGateway()
    call = asyncio.create_task(capture(gateway))

    await asyncio.sleep(0.2)
    assert not call.done()
    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    assert gateway.payments == {}
