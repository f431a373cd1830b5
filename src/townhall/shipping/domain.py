"""What a shipment is made of and what a carrier answers, as values: a shipment is `Booked`,
`Refused` or `Transient`; a cancel is `Cancelled`, `Refused` or `Transient`; a dispatch is
`Dispatched`, `Refused` or `Transient`. And `Shipment`, what shipping keeps of an order's parcel.
Pure Python: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2
    line2: str | None = None


@dataclass(frozen=True)
class ParcelItem:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Booked:
    """The carrier will take the parcel; `shipment_id` is its id for the shipment."""

    shipment_id: str


@dataclass(frozen=True)
class Cancelled:
    shipment_id: str


@dataclass(frozen=True)
class Dispatched:
    """The carrier took the parcel; `tracking` is the number the buyer follows it by."""

    shipment_id: str
    tracking: str


@dataclass(frozen=True)
class Refused:
    """A final no: retrying cannot change it. `reason` is a code (`undeliverable_address`,
    `unknown_shipment`, `invalid_request`, `idempotency_error`, `shipment_cancelled`)."""

    reason: str
    message: str = ""


@dataclass(frozen=True)
class Transient:
    """Worth retrying with the same idempotency key: the carrier was busy or unreachable."""

    error: str
    retry_after: float | None = None


ShipmentOutcome = Booked | Refused | Transient
CancelOutcome = Cancelled | Refused | Transient
DispatchOutcome = Dispatched | Refused | Transient

UNDELIVERABLE_ADDRESS = "undeliverable_address"
UNKNOWN_SHIPMENT = "unknown_shipment"
INVALID_REQUEST = "invalid_request"
IDEMPOTENCY_ERROR = "idempotency_error"
SHIPMENT_CANCELLED = "shipment_cancelled"

# What shipping answers when the carrier never gave a final answer in all the attempts allowed.
CARRIER_UNAVAILABLE = "carrier_unavailable"


class ShipmentStatus(StrEnum):
    CREATED = "created"
    FAILED = "failed"  # refused, or no final answer: nothing is booked that we know of
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Shipment:
    """An order's shipment, one per order; `shipment_id` is the carrier's (once created);
    `tracking` is set once the carrier took the parcel (the order was confirmed)."""

    order_id: str
    status: ShipmentStatus
    shipment_id: str | None = None
    reason: str | None = None
    tracking: str | None = None

    def cancelled(self) -> Shipment:
        if self.status is not ShipmentStatus.CREATED:
            return self
        return replace(self, status=ShipmentStatus.CANCELLED)

    @property
    def dispatchable(self) -> bool:
        """Created and not yet handed to the carrier."""
        return self.status is ShipmentStatus.CREATED and self.tracking is None
