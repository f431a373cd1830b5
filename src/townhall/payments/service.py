"""`PaymentService`: the capture and refund steps of the order saga. It asks the provider, then
records the payment and publishes the answer in one transaction.

No transaction is held open while the provider is asked: the call may take seconds. The
provider's idempotency key is what keeps two racing deliveries of one command to one charge;
the order's row (one per order) and the inbox keep them to one answer each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from townhall.payments.domain import (
    ALREADY_REFUNDED,
    PROVIDER_UNAVAILABLE,
    Captured,
    CaptureOutcome,
    Declined,
    Payment,
    PaymentStatus,
    Permanent,
    Transient,
)
from townhall.payments.events import (
    PAYMENT_TIMEOUT,
    CapturePayment,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RefundPayment,
)
from townhall.payments.ports import (
    HandledCommands,
    PaymentEvents,
    PaymentGateway,
    PaymentStore,
    Received,
    Reply,
)
from townhall.platform.messaging import Retry
from townhall.platform.transaction import Transactions

T = TypeVar("T")


class ProviderUnavailable(Exception):
    """The provider gave no final answer (a processing error, an outage, no answer in time):
    raised so the bus tries the command again, with the same idempotency key."""


class RefundRefused(Exception):
    """The provider refused a refund for good (an unknown payment, a key reused for another
    refund): raised so the command ends in the dead letters, where a person looks. A
    compensation is never answered with a failure: the saga would wait for it forever anyway."""


class PaymentService:
    def __init__(
        self,
        transactions: Transactions,
        payments: PaymentStore,
        events: PaymentEvents,
        handled: HandledCommands,
        gateway: PaymentGateway,
        *,
        call_timeout: float = 10.0,
    ) -> None:
        self._transactions = transactions
        self._payments = payments
        self._events = events
        self._handled = handled
        self._gateway = gateway
        self._call_timeout = call_timeout

    async def capture(
        self, command: CapturePayment, received: Received, *, timeout_fails: bool = False
    ) -> None:
        """Charge the order once, whatever the number of deliveries; answer `PaymentCaptured`
        or `PaymentFailed`. A transient answer raises (the bus retries) until the last attempt,
        which answers `PaymentFailed("provider_unavailable")` and keeps the payment UNKNOWN.
        With `timeout_fails` (the choreography, where no saga times the step), a provider
        that does not answer within the call timeout is answered at once with
        `PaymentFailed("payment_timeout")`, the payment kept UNKNOWN as well."""
        known = await self._read(command.order_id)
        if known is not None and known.settled:
            await self._answer(received, command.order_id, _capture_reply)
            return
        payment = known or Payment(
            command.order_id,
            command.amount_cents,
            command.currency,
            command.idempotency_key,
            PaymentStatus.UNKNOWN,
            payment_method=command.payment_method,
        )
        outcome = await self._ask_capture(payment)
        if isinstance(outcome, Transient):
            timed_out = timeout_fails and outcome.timed_out
            if not received.final_attempt and not timed_out:
                raise _retry(outcome)
            # The saga (or a person) must hear an answer; the row keeps what a refund needs to
            # ask the provider again, should it have charged after all.
            code = PAYMENT_TIMEOUT if timed_out else PROVIDER_UNAVAILABLE
            payment = replace(payment, decline_code=code)
        else:
            payment = _settle(payment, outcome)
        await self._answer(received, command.order_id, _capture_reply, payment)

    async def refund(
        self, command: RefundPayment, received: Received, *, recheck_unknown: bool = True
    ) -> None:
        """Give back what the order's payment holds, once; answer `PaymentRefunded` (amount 0
        when nothing was captured, the amount already refunded when it was). A payment whose
        capture never had a final answer is captured again under its key first: a late capture
        is found and refunded. Without `recheck_unknown` (the choreography, where a capture
        that timed out was answered `payment_timeout` already) such a payment is answered as
        nothing captured, and stays `unknown`, the list a person checks."""
        payment = await self._read(command.order_id)
        if payment is not None and not payment.settled and not recheck_unknown:
            await self._answer(
                received, command.order_id, lambda stored: _refund_reply(stored, command)
            )
            return
        if payment is not None and not payment.settled:
            outcome = await self._ask_capture(payment)
            if isinstance(outcome, Transient):
                raise _retry(outcome)
            payment = _settle(payment, outcome)
        if payment is None or payment.refundable_cents == 0:
            await self._answer(
                received, command.order_id, lambda stored: _refund_reply(stored, command), payment
            )
            return
        assert payment.payment_id is not None  # captured
        amount = min(command.amount_cents, payment.refundable_cents)
        answer = await self._call(
            self._gateway.refund(
                payment_id=payment.payment_id,
                amount_cents=amount,
                idempotency_key=command.idempotency_key,
            )
        )
        if isinstance(answer, Transient):
            raise _retry(answer)
        if isinstance(answer, Permanent):
            if answer.code != ALREADY_REFUNDED:
                raise RefundRefused(f"{answer.code}: {answer.message}")
            refunded = payment.refunded(payment.refundable_cents)
        else:
            refunded = payment.refunded(answer.amount_cents)
        await self._answer(
            received, command.order_id, lambda stored: _refund_reply(stored, command), refunded
        )

    async def _ask_capture(self, payment: Payment) -> CaptureOutcome:
        assert payment.payment_method is not None  # kept while UNKNOWN
        return await self._call(
            self._gateway.capture(
                amount_cents=payment.amount_cents,
                currency=payment.currency,
                payment_method=payment.payment_method,
                idempotency_key=payment.capture_key,
                description=f"order {payment.order_id}",
            )
        )

    async def _call(self, call: Awaitable[T]) -> T | Transient:
        """The provider's answer, or `Transient` after `call_timeout` seconds without one."""
        try:
            return await asyncio.wait_for(call, self._call_timeout)
        except TimeoutError:
            return Transient(f"timeout: no answer within {self._call_timeout} s", timed_out=True)

    async def _read(self, order_id: str) -> Payment | None:
        async with self._transactions.connect() as conn:
            return await self._payments.get(conn, order_id)

    async def _answer(
        self,
        received: Received,
        order_id: str,
        reply: Callable[[Payment | None], Reply],
        payment: Payment | None = None,
    ) -> None:
        """Record `payment` (unless the order's payment settled meanwhile: then that one
        stands) and publish the reply built from what is recorded, in one transaction; nothing
        if the message was handled already."""
        async with self._transactions.transaction() as conn:
            if not await self._handled.first_time(conn, received.message_id):
                return
            stored = await self._payments.get(conn, order_id)
            if payment is not None:
                if stored is None and not await self._payments.add(conn, payment):
                    stored = await self._payments.get(conn, order_id)  # a racing delivery won
                if stored is None:
                    stored = payment
                elif not stored.settled or _moves(stored, payment):
                    await self._payments.update(conn, payment)
                    stored = payment
            await self._events.publish(conn, reply(stored), received)


def _moves(stored: Payment, new: Payment) -> bool:
    """Whether `new` is a later state of a settled `stored` (a refund); never back."""
    return stored.status is not PaymentStatus.FAILED and new.refunded_cents > stored.refunded_cents


def _settle(payment: Payment, outcome: Captured | Declined | Permanent) -> Payment:
    if isinstance(outcome, Captured):
        return payment.captured(outcome.payment_id)
    if isinstance(outcome, Declined):
        return payment.failed(outcome.decline_code)
    return payment.failed(outcome.code)


def _capture_reply(payment: Payment | None) -> Reply:
    assert payment is not None
    if payment.status in (PaymentStatus.CAPTURED, PaymentStatus.REFUNDED):
        assert payment.payment_id is not None
        return PaymentCaptured(
            payment.order_id, payment.payment_id, payment.amount_cents, payment.currency
        )
    return PaymentFailed(payment.order_id, payment.decline_code or PROVIDER_UNAVAILABLE)


def _refund_reply(payment: Payment | None, command: RefundPayment) -> Reply:
    if payment is None or payment.payment_id is None:
        return PaymentRefunded(command.order_id, command.payment_id, 0, command.currency)
    return PaymentRefunded(
        payment.order_id, payment.payment_id, payment.refunded_cents, payment.currency
    )


def _retry(outcome: Transient) -> Exception:
    if outcome.retry_after is not None:
        return Retry(outcome.retry_after, outcome.error)
    return ProviderUnavailable(outcome.error)
