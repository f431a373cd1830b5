"""One contract for payments' store ports (`PaymentStore`, `PaymentEvents`, `HandledCommands`),
run against the SQL adapters on SQLite and on PostgreSQL and against the in-memory fakes the
unit tests use: the fakes behave as the real adapters do, or this fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import townhall.payments
from support.databases import migrated_database, outbox_envelopes
from support.participant_fakes import (
    MemoryHandledCommands,
    MemoryPayments,
    MemoryTransactions,
    PaymentEventsFake,
)
from townhall.payments.adapters.sql import OutboxPaymentEvents, SqlHandledCommands, SqlPayments
from townhall.payments.domain import Payment, PaymentStatus
from townhall.payments.events import TOPIC, PaymentCaptured, PaymentFailed
from townhall.payments.ports import HandledCommands, PaymentEvents, PaymentStore, Received

pytestmark = pytest.mark.timeout(60)

MIGRATIONS = Path(townhall.payments.__file__).parent / "migrations"
MESSAGE_ID = "0190f3c2-0000-7000-8000-000000000001"


@dataclass
class Adapters:
    transactions: Any
    payments: PaymentStore
    events: PaymentEvents
    handled: HandledCommands
    # (topic, type, key, payload, correlation id, causation id) of what was published, in order
    published: Callable[[], Awaitable[list[tuple[Any, ...]]]]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def adapters(request, tmp_path) -> AsyncIterator[Adapters]:
    if request.param == "memory":
        events = PaymentEventsFake()

        async def published_in_memory() -> list[tuple[Any, ...]]:
            return [
                (
                    TOPIC,
                    event.type,
                    event.order_id,
                    event.to_payload(),
                    cause.correlation_id,
                    cause.message_id,
                )
                for event, cause in events.published
            ]

        yield Adapters(
            MemoryTransactions(),
            MemoryPayments(),
            events,
            MemoryHandledCommands(),
            published_in_memory,
        )
        return
    async with migrated_database(request.param, tmp_path, [MIGRATIONS]) as database:

        async def published_in_outbox() -> list[tuple[Any, ...]]:
            envelopes = await outbox_envelopes(database)
            return [
                (
                    topic,
                    e.type,
                    e.key,
                    e.payload,
                    e.headers["correlation_id"],
                    e.headers["causation_id"],
                )
                for topic, e in envelopes
            ]

        yield Adapters(
            database,
            SqlPayments(),
            OutboxPaymentEvents(),
            SqlHandledCommands("payments.commands"),
            published_in_outbox,
        )


def payment(order_id: str = "o-1", **changes: Any) -> Payment:
    base = Payment(
        order_id=order_id,
        amount_cents=7000,
        currency="EUR",
        capture_key=f"order-{order_id}.capture_payment",
        status=PaymentStatus.UNKNOWN,
        decline_code="provider_unavailable",
        payment_method="4242424242424242",
    )
    return replace(base, **changes)


async def get(adapters: Adapters, order_id: str) -> Payment | None:
    async with adapters.transactions.connect() as conn:
        return await adapters.payments.get(conn, order_id)


async def test_an_order_without_a_payment_has_none(adapters):
    assert await get(adapters, "o-404") is None


async def test_an_added_payment_reads_back_as_it_was_written(adapters):
    written = payment()
    async with adapters.transactions.transaction() as conn:
        assert await adapters.payments.add(conn, written)
        assert await adapters.payments.get(conn, "o-1") == written  # seen in its transaction
    assert await get(adapters, "o-1") == written


async def test_a_second_payment_for_one_order_is_refused_and_the_first_stays(adapters):
    first = payment()
    async with adapters.transactions.transaction() as conn:
        assert await adapters.payments.add(conn, first)
    async with adapters.transactions.transaction() as conn:
        assert not await adapters.payments.add(conn, payment(amount_cents=1))
    assert await get(adapters, "o-1") == first


async def test_an_update_replaces_the_orders_payment(adapters):
    async with adapters.transactions.transaction() as conn:
        await adapters.payments.add(conn, payment())
    settled = payment().captured("pi_1").refunded(2500)
    async with adapters.transactions.transaction() as conn:
        await adapters.payments.update(conn, settled)
    stored = await get(adapters, "o-1")
    assert stored == settled
    assert stored is not None
    assert (stored.status, stored.payment_method, stored.refunded_cents) == (
        PaymentStatus.CAPTURED,
        None,
        2500,
    )


async def test_a_rolled_back_transaction_keeps_no_payment_no_event_and_no_handled_message(
    adapters,
):
    with pytest.raises(RuntimeError):
        async with adapters.transactions.transaction() as conn:
            assert await adapters.handled.first_time(conn, MESSAGE_ID)
            await adapters.payments.add(conn, payment())
            await adapters.events.publish(
                conn, PaymentFailed("o-1", "card_declined"), Received(MESSAGE_ID, "saga-1")
            )
            raise RuntimeError("the handler failed")
    assert await get(adapters, "o-1") is None
    assert await adapters.published() == []
    async with adapters.transactions.transaction() as conn:
        assert await adapters.handled.first_time(conn, MESSAGE_ID)


async def test_an_event_goes_out_on_the_payments_topic_keyed_by_order_with_the_saga_ids(adapters):
    event = PaymentCaptured("o-1", "pi_1", 7000, "EUR")
    async with adapters.transactions.transaction() as conn:
        await adapters.events.publish(conn, event, Received(MESSAGE_ID, "saga-1"))
    assert await adapters.published() == [
        (TOPIC, event.type, "o-1", event.to_payload(), "saga-1", MESSAGE_ID)
    ]


async def test_a_message_is_handled_the_first_time_only(adapters):
    async with adapters.transactions.transaction() as conn:
        assert await adapters.handled.first_time(conn, MESSAGE_ID)
        assert not await adapters.handled.first_time(conn, MESSAGE_ID)
    async with adapters.transactions.transaction() as conn:
        assert not await adapters.handled.first_time(conn, MESSAGE_ID)
        assert await adapters.handled.first_time(conn, "0190f3c2-0000-7000-8000-000000000002")
