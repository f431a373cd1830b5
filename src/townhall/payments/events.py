"""Payments' public messages (versioned; additive changes only).

Commands go to payments on `COMMAND_TOPIC`; payments publishes its events on `TOPIC`, keyed by
the order id. `idempotency_key` is one per saga step, the same on every retry, and is what
payments hands the provider (Stripe's `Idempotency-Key`): a retried capture or refund is never
doubled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "payments"
COMMAND_TOPIC = "payments.commands"

# The `decline_code` of a `PaymentFailed` when the provider did not answer in time (the
# choreography's capture: there the payment step's timeout is payments' own call timeout).
PAYMENT_TIMEOUT = "payment_timeout"


@dataclass(frozen=True)
class CapturePayment:
    """Charge the order's total. `payment_method` is what pays: one of the simulator's test
    card numbers, or a provider's payment-method id."""

    type = "payments.CapturePayment"
    version = 1

    order_id: str
    amount_cents: int
    currency: str
    payment_method: str
    idempotency_key: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CapturePayment:
        return cls(**payload)


@dataclass(frozen=True)
class RefundPayment:
    """Give back a captured payment (a compensation)."""

    type = "payments.RefundPayment"
    version = 1

    order_id: str
    payment_id: str
    amount_cents: int
    currency: str
    idempotency_key: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RefundPayment:
        return cls(**payload)


@dataclass(frozen=True)
class PaymentCaptured:
    type = "payments.PaymentCaptured"
    version = 1

    order_id: str
    payment_id: str
    amount_cents: int
    currency: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PaymentCaptured:
        return cls(**payload)


@dataclass(frozen=True)
class PaymentFailed:
    """Nothing was captured. `decline_code` is the provider's (`card_declined`,
    `insufficient_funds`, ...)."""

    type = "payments.PaymentFailed"
    version = 1

    order_id: str
    decline_code: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PaymentFailed:
        return cls(**payload)


@dataclass(frozen=True)
class PaymentRefunded:
    type = "payments.PaymentRefunded"
    version = 1

    order_id: str
    payment_id: str
    amount_cents: int
    currency: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PaymentRefunded:
        return cls(**payload)
