"""Orders' public integration events (versioned; additive changes only), on topic `orders`,
keyed by the order id.

Notifications tells the buyer from `OrderConfirmed`, `OrderFailed` and `OrderCancelled`; in
choreography, inventory reserves on `OrderPlaced` and every participant compensates on
`OrderCancelRequested`. The order's own event stream (`domain`) is not this contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "orders"


@dataclass(frozen=True)
class PlacedLine:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class ShippingAddress:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None


@dataclass(frozen=True)
class OrderPlaced:
    type = "orders.OrderPlaced"
    version = 1

    order_id: str
    buyer_id: str
    lines: tuple[PlacedLine, ...]
    total_cents: int
    currency: str
    shipping_address: ShippingAddress
    saga_mode: str  # "orchestration" or "choreography": the order finishes in this mode

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> OrderPlaced:
        return cls(
            **{
                **payload,
                "lines": tuple(PlacedLine(**line) for line in payload["lines"]),
                "shipping_address": ShippingAddress(**payload["shipping_address"]),
            }
        )


@dataclass(frozen=True)
class OrderCancelRequested:
    type = "orders.OrderCancelRequested"
    version = 1

    order_id: str
    buyer_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> OrderCancelRequested:
        return cls(**payload)


@dataclass(frozen=True)
class OrderConfirmed:
    type = "orders.OrderConfirmed"
    version = 1

    order_id: str
    buyer_id: str
    total_cents: int
    currency: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> OrderConfirmed:
        return cls(**payload)


@dataclass(frozen=True)
class OrderFailed:
    """`reason` is one of `domain.FailureReason` (`out_of_stock`, `payment_declined`, ...);
    `decline_code` the payment provider's, for `payment_declined`."""

    type = "orders.OrderFailed"
    version = 1

    order_id: str
    buyer_id: str
    reason: str
    decline_code: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> OrderFailed:
        return cls(**payload)


@dataclass(frozen=True)
class OrderCancelled:
    type = "orders.OrderCancelled"
    version = 1

    order_id: str
    buyer_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> OrderCancelled:
        return cls(**payload)
