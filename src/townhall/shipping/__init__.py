"""Shipping: shipments with a carrier, the last step of the order saga (issue 21).

Other modules reach it only through `townhall.shipping.events`: the commands it takes (on
`shipping.commands`) and the events it publishes (on `shipping`). It reads orders'
`OrderConfirmed` to dispatch the parcel. It has no facade: nothing calls it synchronously.
"""

from __future__ import annotations

from pathlib import Path

from townhall.config import Settings
from townhall.platform.modules import Installed, ModuleSpec, Platform
from townhall.shipping.adapters.simulator import SimulatedCarrier
from townhall.shipping.adapters.sql import (
    OutboxShippingEvents,
    SqlHandledCommands,
    SqlPlacedOrders,
    SqlShipments,
)
from townhall.shipping.choreography import ShippingChoreography
from townhall.shipping.consumers import (
    CHOREOGRAPHY_GROUP,
    GROUP,
    choreography_consumers,
    command_consumer,
    orders_consumer,
)
from townhall.shipping.ports import Carrier
from townhall.shipping.service import ShippingService

__all__ = ["module"]


def carrier_for(settings: Settings) -> Carrier:
    """The carrier simulator (the only carrier so far), refusing what the settings list."""
    return SimulatedCarrier(
        refuse_countries=_listed(settings.shipping_refuse_countries),
        refuse_postcodes=_listed(settings.shipping_refuse_postcodes),
    )


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _install(platform: Platform) -> Installed:
    settings = platform.settings
    carrier = carrier_for(settings)
    service = ShippingService(
        platform.database,
        SqlShipments(),
        OutboxShippingEvents(),
        SqlHandledCommands(GROUP),
        carrier,
    )
    choreographed = ShippingService(
        platform.database,
        SqlShipments(),
        OutboxShippingEvents(),
        SqlHandledCommands(CHOREOGRAPHY_GROUP),
        carrier,
    )
    choreography = ShippingChoreography(
        platform.database, SqlPlacedOrders(), SqlShipments(), choreographed
    )
    attempts = settings.shipping_max_attempts
    return Installed(
        consumers=[
            command_consumer(service, max_attempts=attempts),
            orders_consumer(service, max_attempts=attempts),
            *choreography_consumers(choreography, max_attempts=attempts),
        ],
        on_stop=[carrier.aclose],
    )


module = ModuleSpec(
    name="shipping",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
)
