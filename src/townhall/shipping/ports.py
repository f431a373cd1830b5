"""The port shipping reaches its carrier through: `Carrier`.

Creating a shipment carries an idempotency key (the saga's, one per order): a retry with the same
key books nothing new and answers what the first attempt answered; the same key with another
address or other items is `Refused("idempotency_error")`. Cancelling is idempotent by the
shipment id: a second cancel answers `Cancelled` again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from townhall.shipping.domain import Address, CancelOutcome, ParcelItem, ShipmentOutcome


class Carrier(Protocol):
    """Books and cancels shipments with one carrier. Answers are values (see the domain), never
    exceptions."""

    name: str

    async def create_shipment(
        self,
        *,
        order_id: str,
        address: Address,
        items: Sequence[ParcelItem],
        idempotency_key: str,
    ) -> ShipmentOutcome: ...

    async def cancel_shipment(self, shipment_id: str) -> CancelOutcome: ...

    async def aclose(self) -> None: ...
