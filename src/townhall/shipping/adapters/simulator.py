"""`SimulatedCarrier`: the embedded default, a carrier simulated in memory. It books every
shipment, except to the countries and postcodes it is told to refuse, so a failure after the
payment (and its refund) is testable; it dispatches a booked shipment with a tracking number.

Its shipments and idempotency keys live in this process's memory: a restart forgets them and
two processes do not share them, which only a simulator may do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from townhall.platform.ids import new_id
from townhall.shipping.domain import (
    IDEMPOTENCY_ERROR,
    INVALID_REQUEST,
    SHIPMENT_CANCELLED,
    UNDELIVERABLE_ADDRESS,
    UNKNOWN_SHIPMENT,
    Address,
    Booked,
    Cancelled,
    CancelOutcome,
    Dispatched,
    DispatchOutcome,
    ParcelItem,
    Refused,
    ShipmentOutcome,
)

_PREFIX = "shp_sim_"  # of the simulator's shipment ids


@dataclass
class SimulatedShipment:
    shipment_id: str
    order_id: str
    address: Address
    items: tuple[ParcelItem, ...]
    cancelled: bool = False
    tracking: str | None = None  # set once dispatched


class SimulatedCarrier:
    """`refuse_countries` (ISO codes, any case) and `refuse_postcodes` (compared without spaces,
    any case) are where it does not deliver: a shipment there is `Refused` with
    `undeliverable_address`. The composition root fills them from the settings."""

    def __init__(
        self,
        *,
        refuse_countries: Iterable[str] = (),
        refuse_postcodes: Iterable[str] = (),
        name: str = "simulator",
    ) -> None:
        self.name = name
        self._refused_countries = frozenset(country.upper() for country in refuse_countries)
        self._refused_postcodes = frozenset(_postcode(code) for code in refuse_postcodes)
        self._answers: dict[str, tuple[tuple[object, ...], ShipmentOutcome]] = {}
        self.shipments: dict[str, SimulatedShipment] = {}

    async def create_shipment(
        self,
        *,
        order_id: str,
        address: Address,
        items: Sequence[ParcelItem],
        idempotency_key: str,
    ) -> ShipmentOutcome:
        request = (order_id, address, tuple(items))
        if idempotency_key in self._answers:
            first_request, outcome = self._answers[idempotency_key]
            if first_request != request:
                return Refused(
                    IDEMPOTENCY_ERROR, f"key {idempotency_key!r} was used for another shipment"
                )
            return outcome
        outcome = self._book(order_id, address, tuple(items))
        self._answers[idempotency_key] = (request, outcome)
        return outcome

    def _book(
        self, order_id: str, address: Address, items: tuple[ParcelItem, ...]
    ) -> Booked | Refused:
        if not items or any(item.quantity < 1 for item in items):
            return Refused(INVALID_REQUEST, "a shipment needs items of quantity 1 or more")
        if address.country.upper() in self._refused_countries:
            return Refused(UNDELIVERABLE_ADDRESS, f"no deliveries to country {address.country}")
        if _postcode(address.postal_code) in self._refused_postcodes:
            return Refused(UNDELIVERABLE_ADDRESS, f"no deliveries to {address.postal_code}")
        shipment = SimulatedShipment(f"{_PREFIX}{new_id().hex}", order_id, address, items)
        self.shipments[shipment.shipment_id] = shipment
        return Booked(shipment.shipment_id)

    async def cancel_shipment(self, shipment_id: str) -> CancelOutcome:
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            return Refused(UNKNOWN_SHIPMENT, f"no shipment {shipment_id!r}")
        if shipment.tracking is not None:
            return Refused(INVALID_REQUEST, f"shipment {shipment_id!r} was dispatched already")
        shipment.cancelled = True
        return Cancelled(shipment_id)

    async def dispatch(self, shipment_id: str) -> DispatchOutcome:
        """The tracking number is made from the shipment id, so every simulator answers the
        same one. A shipment id of the simulator's own form that this one does not hold was
        booked by another process's simulator, or before a restart: it is dispatched too, as
        a real carrier, which keeps its shipments, would."""
        shipment = self.shipments.get(shipment_id)
        if shipment is None and not shipment_id.startswith(_PREFIX):
            return Refused(UNKNOWN_SHIPMENT, f"no shipment {shipment_id!r}")
        if shipment is not None and shipment.cancelled:
            return Refused(SHIPMENT_CANCELLED, f"shipment {shipment_id!r} was cancelled")
        tracking = f"SIM{shipment_id.removeprefix(_PREFIX)[-12:].upper()}"
        if shipment is not None:
            shipment.tracking = tracking
        return Dispatched(shipment_id, tracking)

    async def aclose(self) -> None:
        return None


def _postcode(code: str) -> str:
    return "".join(code.split()).upper()
