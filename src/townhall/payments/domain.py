"""What a payment provider answers, as values: a capture is `Captured`, `Declined`, `Transient`
or `Permanent`; a refund is `Refunded`, `Transient` or `Permanent`. And `Payment`, what payments
keeps of an order's money. Pure Python: no I/O.

A gateway classifies its provider's answer instead of raising, so the payments service decides
from the value whether to report the capture, the decline, or retry the step with the same
idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


@dataclass(frozen=True)
class Captured:
    """The money is taken; `payment_id` is the provider's id for it (what a refund names)."""

    payment_id: str


@dataclass(frozen=True)
class Declined:
    """The card was refused: a final answer for this card, retrying cannot change it.
    `decline_code` is the provider's (`card_declined`, `insufficient_funds`, ...)."""

    decline_code: str
    message: str = ""


@dataclass(frozen=True)
class Transient:
    """Worth retrying with the same idempotency key: the provider had a processing error, was
    busy or rate limited, unreachable, or did not answer in time. After a timeout the request may
    have reached the provider; the retry with the same key is what makes that safe (the
    provider answers the first attempt's result instead of charging or refunding again).
    `retry_after` is the provider's own hint in seconds, when it gave one."""

    error: str
    retry_after: float | None = None
    timed_out: bool = False  # no answer within the caller's bound (not the provider's word)


@dataclass(frozen=True)
class Permanent:
    """The request itself is wrong and retrying cannot help: an unknown payment, a refund above
    what is left, an idempotency key reused for another request (`idempotency_error`), a bad
    secret key. `code` is the provider's (`resource_missing`, ...)."""

    code: str
    message: str = ""


@dataclass(frozen=True)
class Refunded:
    """The money is given back; `refund_id` is the provider's id for the refund."""

    refund_id: str
    payment_id: str
    amount_cents: int


CaptureOutcome = Captured | Declined | Transient | Permanent
RefundOutcome = Refunded | Transient | Permanent

# The codes both gateways use for the request errors every caller may meet.
UNKNOWN_PAYMENT = "resource_missing"
ALREADY_REFUNDED = "charge_already_refunded"
AMOUNT_TOO_LARGE = "amount_too_large"
IDEMPOTENCY_ERROR = "idempotency_error"
PROCESSING_ERROR = "processing_error"

# What payments answers when the provider never gave a final answer in all the attempts allowed.
PROVIDER_UNAVAILABLE = "provider_unavailable"


class PaymentStatus(StrEnum):
    CAPTURED = "captured"
    FAILED = "failed"  # declined, or refused for good: nothing was taken
    # The provider never answered for good in every attempt: it may have charged. The capture
    # can be asked again under the same key (a refund does), so the method is kept meanwhile.
    UNKNOWN = "unknown"
    REFUNDED = "refunded"


@dataclass(frozen=True)
class Payment:
    """An order's payment, one per order. `payment_method` is kept only while the status is
    UNKNOWN (to ask the provider again under `capture_key`); it is cleared once settled."""

    order_id: str
    amount_cents: int
    currency: str
    capture_key: str
    status: PaymentStatus
    payment_id: str | None = None
    refunded_cents: int = 0
    decline_code: str | None = None
    payment_method: str | None = None

    @property
    def settled(self) -> bool:
        """The capture has its final answer (a later capture command only repeats it)."""
        return self.status is not PaymentStatus.UNKNOWN

    @property
    def refundable_cents(self) -> int:
        if self.status not in (PaymentStatus.CAPTURED, PaymentStatus.REFUNDED):
            return 0
        return self.amount_cents - self.refunded_cents

    def captured(self, payment_id: str) -> Payment:
        return replace(
            self, status=PaymentStatus.CAPTURED, payment_id=payment_id, payment_method=None
        )

    def failed(self, code: str) -> Payment:
        return replace(self, status=PaymentStatus.FAILED, decline_code=code, payment_method=None)

    def refunded(self, amount_cents: int) -> Payment:
        """`amount_cents` more given back; REFUNDED once nothing is left."""
        total = min(self.amount_cents, self.refunded_cents + amount_cents)
        status = PaymentStatus.REFUNDED if total >= self.amount_cents else self.status
        return replace(self, refunded_cents=total, status=status)
