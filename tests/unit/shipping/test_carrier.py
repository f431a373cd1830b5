"""The simulated carrier: it books shipments, refuses the countries and postcodes it is told to,
answers a retry with the same key with the first answer, cancels idempotently, and dispatches a
booked shipment with one tracking number."""

from __future__ import annotations

import pytest

from townhall.shipping.adapters.simulator import SimulatedCarrier
from townhall.shipping.domain import (
    IDEMPOTENCY_ERROR,
    INVALID_REQUEST,
    SHIPMENT_CANCELLED,
    UNDELIVERABLE_ADDRESS,
    UNKNOWN_SHIPMENT,
    Address,
    Booked,
    Cancelled,
    Dispatched,
    ParcelItem,
    Refused,
)

ITEMS = (ParcelItem("TICKET-1", 2), ParcelItem("MUG", 1))


def address(country: str = "NL", postal_code: str = "1011 AB") -> Address:
    return Address("Ada Lovelace", "Damrak 1", "Amsterdam", postal_code, country)


async def ship(carrier, *, key="order-1", order_id="order-1", to=None, items=ITEMS):
    return await carrier.create_shipment(
        order_id=order_id, address=to or address(), items=items, idempotency_key=key
    )


async def test_a_shipment_is_booked_with_the_carriers_id_for_it():
    carrier = SimulatedCarrier()

    outcome = await ship(carrier)

    assert isinstance(outcome, Booked)
    shipment = carrier.shipments[outcome.shipment_id]
    assert (shipment.order_id, shipment.items) == ("order-1", ITEMS)


@pytest.mark.parametrize("country", ["XX", "xx"])
async def test_a_shipment_to_a_refused_country_is_refused_as_undeliverable(country):
    carrier = SimulatedCarrier(refuse_countries=["XX"])

    outcome = await ship(carrier, to=address(country=country))

    assert isinstance(outcome, Refused)
    assert outcome.reason == UNDELIVERABLE_ADDRESS
    assert carrier.shipments == {}


@pytest.mark.parametrize("postal_code", ["00000", " 000 00 "])
async def test_a_shipment_to_a_refused_postcode_is_refused_whatever_its_spacing(postal_code):
    carrier = SimulatedCarrier(refuse_postcodes=["00000"])

    outcome = await ship(carrier, to=address(postal_code=postal_code))

    assert isinstance(outcome, Refused)
    assert outcome.reason == UNDELIVERABLE_ADDRESS
    assert carrier.shipments == {}


async def test_other_countries_and_postcodes_are_still_delivered_to():
    carrier = SimulatedCarrier(refuse_countries=["XX"], refuse_postcodes=["00000"])

    outcome = await ship(carrier, to=address(country="DE", postal_code="10115"))

    assert isinstance(outcome, Booked)


async def test_a_retry_with_the_same_key_books_one_shipment_and_answers_the_same():
    carrier = SimulatedCarrier()

    first = await ship(carrier)
    retried = await ship(carrier)

    assert retried == first
    assert len(carrier.shipments) == 1


async def test_a_retried_refusal_answers_the_same_refusal():
    carrier = SimulatedCarrier(refuse_countries=["XX"])

    first = await ship(carrier, to=address(country="XX"))
    retried = await ship(carrier, to=address(country="XX"))

    assert retried == first


async def test_different_keys_book_different_shipments():
    carrier = SimulatedCarrier()

    first = await ship(carrier, key="order-1", order_id="order-1")
    second = await ship(carrier, key="order-2", order_id="order-2")

    assert first != second
    assert len(carrier.shipments) == 2


async def test_the_same_key_for_another_address_is_an_idempotency_error_and_books_nothing():
    carrier = SimulatedCarrier()
    await ship(carrier)

    reused = await ship(carrier, to=address(country="BE", postal_code="1000"))

    assert isinstance(reused, Refused)
    assert reused.reason == IDEMPOTENCY_ERROR
    assert len(carrier.shipments) == 1


@pytest.mark.parametrize("items", [(), (ParcelItem("MUG", 0),)])
async def test_a_shipment_without_items_to_carry_is_refused(items):
    carrier = SimulatedCarrier()

    outcome = await ship(carrier, items=items)

    assert isinstance(outcome, Refused)
    assert outcome.reason == INVALID_REQUEST


async def test_a_cancelled_shipment_is_cancelled_and_a_second_cancel_answers_the_same():
    carrier = SimulatedCarrier()
    booked = await ship(carrier)

    first = await carrier.cancel_shipment(booked.shipment_id)
    again = await carrier.cancel_shipment(booked.shipment_id)

    assert first == again == Cancelled(booked.shipment_id)
    assert carrier.shipments[booked.shipment_id].cancelled


async def test_cancelling_an_unknown_shipment_is_refused():
    carrier = SimulatedCarrier()

    outcome = await carrier.cancel_shipment("shp_unknown")

    assert isinstance(outcome, Refused)
    assert outcome.reason == UNKNOWN_SHIPMENT


async def test_a_dispatch_answers_one_tracking_number_and_only_for_a_live_shipment():
    carrier = SimulatedCarrier()
    booked = await ship(carrier)
    first = await carrier.dispatch(booked.shipment_id)
    again = await carrier.dispatch(booked.shipment_id)
    assert isinstance(first, Dispatched) and first == again
    assert first.tracking == carrier.shipments[booked.shipment_id].tracking
    refused_cancel = await carrier.cancel_shipment(booked.shipment_id)
    assert isinstance(refused_cancel, Refused) and refused_cancel.reason == INVALID_REQUEST

    void = await ship(carrier, key="order-2", order_id="order-2")
    await carrier.cancel_shipment(void.shipment_id)
    assert await carrier.dispatch(void.shipment_id) == Refused(
        SHIPMENT_CANCELLED, f"shipment {void.shipment_id!r} was cancelled"
    )
    unknown = await carrier.dispatch("shp_unknown")
    assert isinstance(unknown, Refused) and unknown.reason == UNKNOWN_SHIPMENT
    # Another process's simulator (or this one after a restart) answers the same tracking.
    assert await SimulatedCarrier().dispatch(booked.shipment_id) == first
