"""The saga proof matrix in one process (issue 21), on SQLite + the in-process bus and on
PostgreSQL + RabbitMQ, with the real inventory, payments and shipping modules behind the HTTP
edge, in every saga mode (`saga_mode`):

- a failure injected at each step (out of stock; a declined card; a carrier refusing the
  country): the steps before it are compensated once each, last first, and the order ends once;
- every reply redelivered at each step (the same envelope again at once, and all of them again,
  out of order, once the saga is over): recorded as duplicates, nothing else changes, no second
  command;
- 200 orders posted 40 at a time for 50 units of one sku: exactly 50 confirmed, the rest failed
  out of stock, the money captured is the confirmed orders', no reservation left behind.

One app per stack and mode serves every test of the module. The crashes (SIGKILLed processes)
are in `tests/e2e/test_orders_processes.py`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from support.app import running_app, settings_for
from support.notifications import eventually, user
from support.participants import STACKS, stack_urls
from support.saga_checks import (
    CONFIRMED,
    DECLINED_CARD,
    FAILED_AT,
    GOOD_CARD,
    REFUSED_COUNTRY,
    REPEATS,
    STEPS,
    Expected,
    check_course,
    order_events,
    participants_of,
    rows,
    timeline,
)
from townhall.bootstrap import Runtime
from townhall.orders.consumers import REPLY_TYPES
from townhall.platform.messaging import Envelope

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

MODULES = ["identity", "inventory", "payments", "shipping", "orders"]
REPLY_TOPICS = ("inventory", "payments", "shipping")
PRODUCTS = (
    {"sku": "tee", "name": "T-shirt", "price_cents": 1500, "currency": "EUR", "stock": 1000},
    {"sku": "scarce", "name": "Sold out", "price_cents": 900, "currency": "EUR", "stock": 0},
    {"sku": "hot", "name": "Hot ticket", "price_cents": 2500, "currency": "EUR", "stock": 50},
)
ADDRESS = {"name": "Ada", "line1": "1 Main Street", "city": "Ghent", "postal_code": "9000"}


@dataclass
class Echo:
    """A consumer group of the test on the participants' topics: it keeps every reply, and
    publishes each reply once more at once while `repeating` (the same envelope, so the same
    id: a redelivery)."""

    runtime: Runtime
    received: dict[str, list[tuple[str, Envelope]]] = field(default_factory=dict)
    repeating: bool = False
    repeated: set[str] = field(default_factory=set)

    async def listen(self) -> None:
        for topic in REPLY_TOPICS:

            async def keep(envelope: Envelope, topic: str = topic) -> None:
                if envelope.type not in REPLY_TYPES:
                    return  # not a saga reply (e.g. shipping's ShipmentDispatched after it)
                if str(envelope.id) in self.repeated:
                    return  # our own copy coming back
                self.received.setdefault(envelope.key or "", []).append((topic, envelope))
                if self.repeating:
                    self.repeated.add(str(envelope.id))
                    await self.runtime.platform.bus.publish(topic, envelope)

            await self.runtime.platform.bus.subscribe(
                topic, f"test.echo.{uuid.uuid4().hex[:6]}", keep
            )


@dataclass
class Shop:
    client: httpx.AsyncClient
    runtime: Runtime
    boss: dict[str, str]
    buyer: dict[str, str]
    echo: Echo
    mode: str

    async def place(self, *, sku: str = "tee", card: str = GOOD_CARD, country: str = "BE") -> str:
        body = {
            "items": [{"sku": sku, "quantity": 1}],
            "shipping_address": {**ADDRESS, "country": country},
            "payment": {"card": card},
        }
        headers = {**self.buyer, "Idempotency-Key": uuid.uuid4().hex}
        answer = await self.client.post("/api/v1/orders", headers=headers, json=body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    async def ended(self, order_id: str, *, within: float = 30.0) -> dict[str, Any]:
        async def final() -> dict[str, Any] | None:
            answer = await self.client.get(f"/api/v1/orders/{order_id}", headers=self.buyer)
            assert answer.status_code == 200, answer.text
            order: dict[str, Any] = answer.json()
            return order if order["status"] != "PENDING" else None

        return dict(await eventually(final, within=within))


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=list(STACKS))
async def shop(request, tmp_path_factory, saga_mode) -> AsyncIterator[Shop]:
    tmp = tmp_path_factory.mktemp("shop")
    async with stack_urls(request.param, tmp) as (database_url, bus):
        settings = settings_for(
            database_url,
            tmp,
            bus_url=bus + "&partitions=1",  # few queues on the shared broker
            admins="boss",
            saga_mode=saga_mode,
            shipping_refuse_countries=REFUSED_COUNTRY,
            rate_limits="default=1000000/minute;auth=1000/minute",
            rate_limit_ip="1000000/minute",
        )
        async with running_app(settings, MODULES) as (client, runtime):
            _, boss = await user(client, "boss")
            _, buyer = await user(client)
            for product in PRODUCTS:
                created = await client.post("/api/v1/products", headers=boss, json=product)
                assert created.status_code == 201, created.text
            echo = Echo(runtime)
            await echo.listen()
            yield Shop(client, runtime, boss, buyer, echo, saga_mode)


FAILURES: dict[str, dict[str, str]] = {
    "reserve_stock": {"sku": "scarce"},
    "capture_payment": {"card": DECLINED_CARD},
    "create_shipment": {"country": REFUSED_COUNTRY},
}
# What each participant holds of an order failed at step k, once compensated.
LEFT_BEHIND = {
    "reserve_stock": {"payment": None, "reservation": "failed", "shipment": None},
    "capture_payment": {
        "payment": ("failed", 1500, 0),
        "reservation": "released",
        "shipment": None,
    },
    "create_shipment": {
        "payment": ("refunded", 1500, 1500),
        "reservation": "released",
        "shipment": "failed",
    },
}


@pytest.mark.parametrize("step", STEPS)
async def test_a_failure_at_a_step_compensates_the_steps_before_it_once_last_first(shop, step):
    order_id = await shop.place(**FAILURES[step])
    order = await shop.ended(order_id)
    expected = FAILED_AT[step]
    assert (order["status"], order["reason"]) == (expected.status, expected.reason)
    database = shop.runtime.platform.database
    check_course(
        expected,
        await order_events(database, order_id),
        await timeline(database, order_id),
        shop.mode,
    )
    assert await participants_of(database, order_id) == LEFT_BEHIND[step]


async def redelivered(shop: Shop, order_id: str, expected: Expected) -> None:
    """Every reply of the order came twice (the echo) and each was applied once; all of them
    published again now, in reverse order, are duplicates and change nothing."""
    database = shop.runtime.platform.database
    replies = shop.echo.received[order_id]
    steps = await timeline(database, order_id)
    check_course(expected, await order_events(database, order_id), steps, shop.mode)
    repeats = REPEATS[shop.mode]
    handled = [s for s in steps if s.module != "orders"]
    assert len(replies) == len(handled) // 2 == len(expected.events) - 2  # placed, end
    for _, envelope in replies:
        outcomes = sorted(s.outcome for s in handled if s.message_id == str(envelope.id))
        assert outcomes[0] == "applied" and outcomes[1:] in [[r] for r in repeats], (
            envelope.type,
            outcomes,
        )

    for topic, envelope in reversed(replies):  # out of order: the last reply first
        await shop.runtime.platform.bus.publish(topic, envelope)

    async def all_seen() -> list | None:
        now = await timeline(database, order_id)
        return now if len(now) == len(steps) + len(replies) else None

    after = await eventually(all_seen)
    assert after[: len(steps)] == steps
    assert {s.outcome for s in after[len(steps) :]} <= set(repeats), after[len(steps) :]
    # (each topic is its own queue: the copies come back in any order across topics)
    assert sorted(s.message_id for s in after[len(steps) :]) == sorted(
        str(envelope.id) for _, envelope in replies
    )
    check_course(expected, await order_events(database, order_id), after, shop.mode)


@pytest.mark.parametrize("step", [*STEPS, None], ids=[*STEPS, "none"])
async def test_replies_redelivered_at_each_step_and_out_of_order_change_nothing(shop, step):
    """`step`: where a failure is injected (None: the saga succeeds)."""
    database = shop.runtime.platform.database
    expected = FAILED_AT[step] if step else CONFIRMED
    shop.echo.repeating = True
    try:
        order_id = await shop.place(**(FAILURES[step] if step else {}))
        order = await shop.ended(order_id)
        assert order["status"] == expected.status

        async def both_copies_handled() -> bool:
            handled = [s for s in await timeline(database, order_id) if s.module != "orders"]
            return len(handled) == 2 * (len(expected.events) - 2)

        await eventually(both_copies_handled)  # the last reply's copy may come after the end
    finally:
        shop.echo.repeating = False
    await redelivered(shop, order_id, expected)


async def test_200_concurrent_orders_for_50_units_confirm_exactly_50(shop):
    database = shop.runtime.platform.database
    gate = asyncio.Semaphore(40)

    async def one() -> str:
        async with gate:
            return await shop.place(sku="hot")

    order_ids = await asyncio.gather(*(one() for _ in range(200)))
    assert len(set(order_ids)) == 200
    ended = await asyncio.gather(*(shop.ended(order_id, within=90) for order_id in order_ids))
    confirmed = [o for o in ended if o["status"] == "CONFIRMED"]
    failed = [o for o in ended if o["status"] == "FAILED"]
    assert len(confirmed) == 50 and len(failed) == 150
    assert {o["reason"] for o in failed} == {"out_of_stock"}

    async def stock_gone() -> list | None:
        (hot,) = await rows(
            database, "SELECT on_hand, reserved FROM inventory_products WHERE sku = 'hot'"
        )
        return hot if tuple(hot) == (0, 0) else None

    await eventually(stock_gone)  # the confirmed orders' units have left, none is held
    stock = await shop.client.get("/api/v1/products/hot")
    assert stock.json()["stock"] == 0
    ours = {o["id"] for o in confirmed}
    payments = await rows(database, "SELECT order_id, status, amount_cents FROM payments_payments")
    payments = [p for p in payments if p.order_id in set(order_ids)]
    assert {p.order_id for p in payments} == ours  # nothing charged for a failed order
    assert {p.status for p in payments} == {"captured"}
    assert sum(p.amount_cents for p in payments) == sum(o["total_cents"] for o in confirmed)
    reservations = await rows(database, "SELECT order_id, status FROM inventory_reservations")
    statuses: dict[str, set[str]] = {}
    for r in reservations:
        if r.order_id in set(order_ids):
            statuses.setdefault(r.status, set()).add(r.order_id)
    assert statuses == {"committed": ours, "failed": set(order_ids) - ours}
