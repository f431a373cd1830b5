"""What a payment provider answers, as values: a capture is `Captured`, `Declined`, `Transient`
or `Permanent`; a refund is `Refunded`, `Transient` or `Permanent`. Pure Python: no I/O.

A gateway classifies its provider's answer instead of raising, so the payments service decides
from the value whether to report the capture, the decline, or retry the step with the same
idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass


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
