"""The shipping service on in-memory ports and the carrier simulator: one parcel per order
whatever the deliveries, a refusal is a failure event, a cancel is idempotent, a confirmed
order's parcel is dispatched once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from support.participant_fakes import (
    MemoryHandledCommands,
    MemoryShipments,
    MemoryTransactions,
    ShippingEventsFake,
)
from townhall.platform.messaging import Retry
from townhall.shipping.adapters.simulator import SimulatedCarrier
from townhall.shipping.domain import (
    CARRIER_UNAVAILABLE,
    CancelOutcome,
    DispatchOutcome,
    Refused,
    ShipmentOutcome,
    ShipmentStatus,
    Transient,
)
from townhall.shipping.events import (
    Address,
    CancelShipment,
    CreateShipment,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentFailed,
    ShippedLine,
)
from townhall.shipping.ports import Received
from townhall.shipping.service import (
    CancelRefused,
    CarrierUnavailable,
    DispatchRefused,
    NoShipment,
    ShippingService,
)

pytestmark = pytest.mark.timeout(10)

HOME = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB")
NOWHERE = Address("Nemo", "1 Deep Street", "Atlantis", "00000", "XX")


class Scripted:
    """A carrier that answers the scripted outcomes first, then passes calls to the simulator."""

    def __init__(
        self,
        *creates: ShipmentOutcome,
        cancels: tuple[CancelOutcome, ...] = (),
        dispatches: tuple[DispatchOutcome, ...] = (),
    ) -> None:
        self.name = "scripted"
        self.simulator = SimulatedCarrier(refuse_countries=["XX"])
        self.creates = list(creates)
        self.cancels = list(cancels)
        self.dispatches = list(dispatches)
        self.create_calls = 0
        self.dispatch_calls = 0

    async def create_shipment(self, **request) -> ShipmentOutcome:
        self.create_calls += 1
        if self.creates:
            return self.creates.pop(0)
        return await self.simulator.create_shipment(**request)

    async def cancel_shipment(self, shipment_id: str) -> CancelOutcome:
        if self.cancels:
            return self.cancels.pop(0)
        return await self.simulator.cancel_shipment(shipment_id)

    async def dispatch(self, shipment_id: str) -> DispatchOutcome:
        self.dispatch_calls += 1
        await asyncio.sleep(0)  # a real carrier call yields: racing deliveries interleave here
        if self.dispatches:
            return self.dispatches.pop(0)
        return await self.simulator.dispatch(shipment_id)

    async def aclose(self) -> None:
        return None


class Shipping:
    def __init__(self, carrier: Scripted | None = None) -> None:
        self.carrier = carrier or Scripted()
        self.store = MemoryShipments()
        self.events = ShippingEventsFake()
        self.service = ShippingService(
            MemoryTransactions(), self.store, self.events, MemoryHandledCommands(), self.carrier
        )

    @property
    def booked(self) -> int:
        return len(self.carrier.simulator.shipments)


def create_of(address: Address = HOME, order_id: str = "o-1") -> CreateShipment:
    return CreateShipment(order_id, address, (ShippedLine("tee-m", 2),))


def message(final: bool = False) -> Received:
    return Received(str(uuid.uuid4()), "saga-1", final_attempt=final)


async def test_a_shipment_is_booked_recorded_and_answered_created():
    shipping = Shipping()
    await shipping.service.create(create_of(), message())

    [event] = shipping.events.events
    assert isinstance(event, ShipmentCreated) and event.order_id == "o-1"
    assert event.shipment_id in shipping.carrier.simulator.shipments
    stored = shipping.store.rows["o-1"]
    assert (stored.status, stored.shipment_id) == (ShipmentStatus.CREATED, event.shipment_id)


async def test_a_refused_address_answers_shipment_failed_with_the_carriers_reason():
    shipping = Shipping()
    await shipping.service.create(create_of(NOWHERE), message())
    assert shipping.events.events == [ShipmentFailed("o-1", "undeliverable_address")]
    assert shipping.store.rows["o-1"].status is ShipmentStatus.FAILED
    assert shipping.booked == 0


async def test_a_duplicate_create_books_one_parcel_and_answers_the_same_shipment():
    shipping = Shipping()
    await shipping.service.create(create_of(), message())
    await shipping.service.create(create_of(), message())
    first, second = shipping.events.events
    assert first == second
    assert shipping.booked == 1
    assert shipping.carrier.create_calls == 1


async def test_racing_deliveries_of_one_create_book_one_parcel():
    shipping = Shipping()
    await asyncio.gather(*(shipping.service.create(create_of(), message()) for _ in range(5)))
    assert shipping.booked == 1
    assert len({event.shipment_id for event in shipping.events.events}) == 1


async def test_a_transient_answer_raises_for_the_bus_to_retry_then_the_retry_books_once():
    shipping = Shipping(Scripted(Transient("carrier busy")))
    with pytest.raises(CarrierUnavailable):
        await shipping.service.create(create_of(), message())
    assert shipping.events.published == [] and shipping.store.rows == {}
    await shipping.service.create(create_of(), message())
    assert isinstance(shipping.events.events[0], ShipmentCreated)
    assert shipping.booked == 1


async def test_a_carriers_retry_after_hint_becomes_the_bus_retry_delay():
    shipping = Shipping(Scripted(Transient("slow down", retry_after=2.0)))
    with pytest.raises(Retry) as raised:
        await shipping.service.create(create_of(), message())
    assert raised.value.after == 2.0


async def test_the_last_attempt_without_a_final_answer_answers_failed():
    shipping = Shipping(Scripted(Transient("carrier busy")))
    await shipping.service.create(create_of(), message(final=True))
    assert shipping.events.events == [ShipmentFailed("o-1", CARRIER_UNAVAILABLE)]


async def test_a_cancel_voids_the_shipment_once_and_answers_cancelled_each_time():
    shipping = Shipping()
    await shipping.service.create(create_of(), message())
    created = shipping.events.events[0]
    command = CancelShipment("o-1", created.shipment_id)
    await shipping.service.cancel(command, message())
    await shipping.service.cancel(command, message())

    cancelled = ShipmentCancelled("o-1", created.shipment_id)
    assert shipping.events.events[1:] == [cancelled, cancelled]
    assert shipping.carrier.simulator.shipments[created.shipment_id].cancelled
    assert shipping.store.rows["o-1"].status is ShipmentStatus.CANCELLED


async def test_cancelling_an_order_without_a_shipment_answers_cancelled_and_books_nothing():
    shipping = Shipping()
    await shipping.service.cancel(CancelShipment("o-9", "shp-x"), message())
    assert shipping.events.events == [ShipmentCancelled("o-9", "shp-x")]
    assert shipping.store.rows == {}


async def test_a_cancel_the_carrier_refuses_for_good_goes_to_a_person():
    shipping = Shipping(Scripted(cancels=(Refused("invalid_request", "already picked up"),)))
    await shipping.service.create(create_of(), message())
    with pytest.raises(CancelRefused, match="invalid_request"):
        await shipping.service.cancel(CancelShipment("o-1", "any"), message())
    assert shipping.store.rows["o-1"].status is ShipmentStatus.CREATED


async def test_a_transient_cancel_raises_for_the_bus_to_retry():
    shipping = Shipping(Scripted(cancels=(Transient("carrier busy"),)))
    await shipping.service.create(create_of(), message())
    with pytest.raises(CarrierUnavailable):
        await shipping.service.cancel(CancelShipment("o-1", "any"), message(final=True))
    assert shipping.store.rows["o-1"].status is ShipmentStatus.CREATED


# --- dispatch: the parcel of a confirmed order ---------------------------------------------


async def test_a_confirmed_orders_parcel_is_dispatched_once_whatever_the_deliveries():
    shipping = Shipping()
    await shipping.service.create(create_of(), message())
    [created] = shipping.events.events
    confirmed = message()
    await asyncio.gather(
        *(shipping.service.dispatch("o-1", "buyer-1", confirmed) for _ in range(3)),
        shipping.service.dispatch("o-1", "buyer-1", message()),  # a copy in another envelope
    )
    await shipping.service.dispatch("o-1", "buyer-1", confirmed)  # redelivered after all that

    dispatched = [e for e in shipping.events.events if isinstance(e, ShipmentDispatched)]
    tracking = shipping.carrier.simulator.shipments[created.shipment_id].tracking
    assert tracking and tracking.startswith("SIM")
    assert dispatched == [ShipmentDispatched("o-1", created.shipment_id, tracking, "buyer-1")]
    assert shipping.store.rows["o-1"].tracking == tracking
    assert shipping.store.rows["o-1"].status is ShipmentStatus.CREATED
    assert shipping.carrier.dispatch_calls == 4  # the redelivery found it done, without a call
    [(_, cause)] = [(e, c) for e, c in shipping.events.published if e in dispatched]
    assert cause.correlation_id == "saga-1"


async def test_a_dispatch_the_carrier_refuses_goes_to_a_person_and_a_transient_one_is_retried():
    shipping = Shipping(
        Scripted(dispatches=(Transient("carrier busy"), Refused("shipment_cancelled", "void")))
    )
    await shipping.service.create(create_of(), message())
    with pytest.raises(CarrierUnavailable):
        await shipping.service.dispatch("o-1", "buyer-1", message())
    with pytest.raises(DispatchRefused, match="shipment_cancelled"):
        await shipping.service.dispatch("o-1", "buyer-1", message())
    assert shipping.store.rows["o-1"].tracking is None
    assert [type(e) for e in shipping.events.events] == [ShipmentCreated]
    await shipping.service.dispatch("o-1", "buyer-1", message())  # the next try goes through
    assert isinstance(shipping.events.events[-1], ShipmentDispatched)


async def test_no_parcel_is_dispatched_for_an_order_without_a_created_shipment():
    shipping = Shipping()
    with pytest.raises(NoShipment):  # the bus retries, then keeps it for a person
        await shipping.service.dispatch("o-9", "buyer-1", message())
    await shipping.service.create(create_of(NOWHERE, "o-2"), message())
    await shipping.service.dispatch("o-2", "buyer-1", message())  # failed: nothing to send
    assert shipping.carrier.dispatch_calls == 0
    assert [type(e) for e in shipping.events.events] == [ShipmentFailed]


async def test_a_dispatched_parcel_can_no_longer_be_cancelled():
    shipping = Shipping()
    await shipping.service.create(create_of(), message())
    await shipping.service.dispatch("o-1", None, message())
    with pytest.raises(CancelRefused, match="invalid_request"):
        await shipping.service.cancel(CancelShipment("o-1", "any"), message())
    assert shipping.store.rows["o-1"].status is ShipmentStatus.CREATED
