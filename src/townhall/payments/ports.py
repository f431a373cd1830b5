"""The port payments reaches its provider through: `PaymentGateway`.

Every call carries an idempotency key, one per saga step and the same on every retry of that
step: a retried capture or refund with the same key never charges or refunds twice, and answers
what the first attempt answered. The same key with another request is a `Permanent`
`idempotency_error`, never a second charge.
"""

from __future__ import annotations

from typing import Protocol

from townhall.payments.domain import CaptureOutcome, RefundOutcome


class PaymentGateway(Protocol):
    """Captures and refunds with one provider. Answers are values (see the domain), never
    exceptions; a call that gets no answer at all waits until the caller cancels it, so every
    caller bounds it with its step timeout (`asyncio.wait_for`, or the saga's durable timer)."""

    name: str

    async def capture(
        self,
        *,
        amount_cents: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        description: str = "",
    ) -> CaptureOutcome:
        """Charge `amount_cents` (in the currency's minor unit; `currency` is ISO 4217, any
        case) to `payment_method`: a card number (the test cards of the README) or a provider's
        payment-method id (`pm_...`)."""
        ...

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str
    ) -> RefundOutcome:
        """Give back `amount_cents` of a captured payment (a compensation)."""
        ...

    async def aclose(self) -> None: ...
