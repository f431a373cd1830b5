"""`SimulatedPaymentGateway`: the embedded default, a payment provider simulated in memory with
Stripe's test cards, so the order saga's every payment path runs without a provider.

It keeps its payments, refunds and idempotency keys in this process's memory: a restart forgets
them, and two processes do not share them. That is what a simulator may do, never what a real
gateway may; production uses a provider (`StripePaymentGateway`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from townhall.payments.domain import (
    ALREADY_REFUNDED,
    AMOUNT_TOO_LARGE,
    IDEMPOTENCY_ERROR,
    PROCESSING_ERROR,
    UNKNOWN_PAYMENT,
    Captured,
    CaptureOutcome,
    Declined,
    Permanent,
    Refunded,
    RefundOutcome,
    Transient,
)
from townhall.platform.ids import new_id


class Card(Enum):
    SUCCEEDS = "succeeds"
    DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PROCESSING_ERROR = "processing_error"
    NEVER_ANSWERS = "never_answers"


# Stripe's test card numbers (and Stripe's test PaymentMethod ids for them), plus one of ours:
# `4000000000001117` is no Stripe card; it never answers, to exercise the saga's step timeout.
NEVER_ANSWERING_CARD = "4000000000001117"
TEST_CARDS: dict[str, Card] = {
    "4242424242424242": Card.SUCCEEDS,
    "pm_card_visa": Card.SUCCEEDS,
    "4000000000000002": Card.DECLINED,
    "pm_card_chargeDeclined": Card.DECLINED,
    "4000000000009995": Card.INSUFFICIENT_FUNDS,
    "pm_card_chargeDeclinedInsufficientFunds": Card.INSUFFICIENT_FUNDS,
    "4000000000000119": Card.PROCESSING_ERROR,
    "pm_card_chargeDeclinedProcessingError": Card.PROCESSING_ERROR,
    NEVER_ANSWERING_CARD: Card.NEVER_ANSWERS,
    "pm_card_townhallNeverAnswers": Card.NEVER_ANSWERS,
}


@dataclass
class SimulatedPayment:
    payment_id: str
    amount_cents: int
    currency: str
    refunded_cents: int = 0


Outcome = TypeVar("Outcome", CaptureOutcome, RefundOutcome)


@dataclass(frozen=True)
class _Stored(Generic[Outcome]):
    """An answer kept under its idempotency key, with the request it answered."""

    request: tuple[object, ...]
    outcome: Outcome

    def replay(self, key: str, request: tuple[object, ...]) -> Outcome | Permanent:
        if request != self.request:
            return Permanent(
                IDEMPOTENCY_ERROR, f"Idempotency key {key!r} was used for another request."
            )
        return self.outcome


class SimulatedPaymentGateway:
    """`no_answer_after`: how long the never-answering card waits before answering `Transient`
    (a client's read timeout); `None` (the default) waits until the caller cancels the call.
    Tests set a bound so a forgotten `wait_for` fails fast instead of hanging."""

    def __init__(self, *, no_answer_after: float | None = None, name: str = "simulator") -> None:
        self.name = name
        self._no_answer_after = no_answer_after
        self._captures: dict[str, _Stored[CaptureOutcome]] = {}
        self._refunds: dict[str, _Stored[RefundOutcome]] = {}
        self.payments: dict[str, SimulatedPayment] = {}
        self.refunds: list[Refunded] = []

    async def capture(
        self,
        *,
        amount_cents: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        description: str = "",
    ) -> CaptureOutcome:
        request = (amount_cents, currency.lower(), payment_method, description)
        if idempotency_key in self._captures:
            return self._captures[idempotency_key].replay(idempotency_key, request)
        card = TEST_CARDS.get(payment_method)
        outcome: CaptureOutcome
        if card is Card.NEVER_ANSWERS:
            return await self._never_answer()
        if card is Card.PROCESSING_ERROR:
            # Not stored: the retry with the same key is a new attempt, as the README says.
            return Transient(f"{PROCESSING_ERROR}: an error occurred while processing the card")
        if card is Card.SUCCEEDS:
            payment = SimulatedPayment(f"pi_sim_{new_id().hex}", amount_cents, currency.lower())
            self.payments[payment.payment_id] = payment
            outcome = Captured(payment.payment_id)
        elif card is Card.DECLINED:
            outcome = Declined("card_declined", "Your card was declined.")
        elif card is Card.INSUFFICIENT_FUNDS:
            outcome = Declined("insufficient_funds", "Your card has insufficient funds.")
        elif payment_method.startswith("pm_"):
            outcome = Permanent(UNKNOWN_PAYMENT, f"No such PaymentMethod: {payment_method!r}")
        else:
            outcome = Declined("incorrect_number", "The card number is not a test card.")
        self._captures[idempotency_key] = _Stored(request, outcome)
        return outcome

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str
    ) -> RefundOutcome:
        request = (payment_id, amount_cents)
        if idempotency_key in self._refunds:
            return self._refunds[idempotency_key].replay(idempotency_key, request)
        outcome: RefundOutcome
        payment = self.payments.get(payment_id)
        if payment is None:
            outcome = Permanent(UNKNOWN_PAYMENT, f"No such payment: {payment_id!r}")
        elif payment.refunded_cents >= payment.amount_cents:
            outcome = Permanent(ALREADY_REFUNDED, f"Payment {payment_id} is already refunded.")
        elif amount_cents > payment.amount_cents - payment.refunded_cents:
            left = payment.amount_cents - payment.refunded_cents
            outcome = Permanent(AMOUNT_TOO_LARGE, f"Only {left} of {payment_id} can be refunded.")
        else:
            payment.refunded_cents += amount_cents
            outcome = Refunded(f"re_sim_{new_id().hex}", payment_id, amount_cents)
            self.refunds.append(outcome)
        self._refunds[idempotency_key] = _Stored(request, outcome)
        return outcome

    async def _never_answer(self) -> Transient:
        if self._no_answer_after is None:
            await asyncio.Event().wait()  # until the caller cancels
        else:
            await asyncio.sleep(self._no_answer_after)
        return Transient(f"timeout: no answer within {self._no_answer_after} s")

    async def aclose(self) -> None:
        return None
