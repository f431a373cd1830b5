"""Shipping's public messages (versioned; additive changes only).

Commands go to shipping on `COMMAND_TOPIC`; shipping publishes its events on `TOPIC`, keyed by
the order id, which is also the idempotency key: an order has at most one shipment. Once the
order is confirmed (orders' `OrderConfirmed`), the carrier takes the parcel and shipping
publishes `ShipmentDispatched`, once per order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "shipping"
COMMAND_TOPIC = "shipping.commands"


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2
    line2: str | None = None


@dataclass(frozen=True)
class ShippedLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class CreateShipment:
    type = "shipping.CreateShipment"
    version = 1

    order_id: str
    address: Address
    lines: tuple[ShippedLine, ...]

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CreateShipment:
        return cls(
            order_id=payload["order_id"],
            address=Address(**payload["address"]),
            lines=tuple(ShippedLine(**line) for line in payload["lines"]),
        )


@dataclass(frozen=True)
class CancelShipment:
    """Void a shipment before the carrier takes it. The saga sends it only for a shipment
    created after the saga stopped waiting for it (its step timed out): a buyer cannot cancel
    an order whose shipment exists."""

    type = "shipping.CancelShipment"
    version = 1

    order_id: str
    shipment_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CancelShipment:
        return cls(**payload)


@dataclass(frozen=True)
class ShipmentCreated:
    type = "shipping.ShipmentCreated"
    version = 1

    order_id: str
    shipment_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ShipmentCreated:
        return cls(**payload)


@dataclass(frozen=True)
class ShipmentFailed:
    """No shipment was made; `reason` is the carrier's (`undeliverable_address`, ...)."""

    type = "shipping.ShipmentFailed"
    version = 1

    order_id: str
    reason: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ShipmentFailed:
        return cls(**payload)


@dataclass(frozen=True)
class ShipmentCancelled:
    type = "shipping.ShipmentCancelled"
    version = 1

    order_id: str
    shipment_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ShipmentCancelled:
        return cls(**payload)


@dataclass(frozen=True)
class ShipmentDispatched:
    """The carrier took the parcel of a confirmed order: `tracking` is its tracking number.
    Published once per order; `buyer_id` is the order's buyer (from `OrderConfirmed`), so the
    buyer can be told without asking orders."""

    type = "shipping.ShipmentDispatched"
    version = 1

    order_id: str
    shipment_id: str
    tracking: str
    buyer_id: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ShipmentDispatched:
        return cls(**payload)
