"""The same order scenarios in both saga modes, end to end over HTTP with the real inventory,
payments (the simulator) and shipping (the carrier simulator) modules, on SQLite + the
in-process bus and on PostgreSQL + RabbitMQ: each scenario ends in the state the table says,
whatever the mode (status, reason, decline code), the stock of every failed or cancelled
order is back, and money is captured only for the confirmed order and refunded where a
failure came after the capture."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from support.app import running_app, settings_for
from support.notifications import eventually, user
from townhall.bootstrap import assemble
from townhall.config import ConfigError
from townhall.orders.saga import Note
from townhall.orders.service import CancelRefused

pytestmark = pytest.mark.timeout(120)

MODULES = ["identity", "inventory", "payments", "shipping", "orders"]
MUG = {"sku": "mug", "name": "Mug", "price_cents": 900, "currency": "EUR", "stock": 10}
GOOD = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000009995"
NEVER_ANSWERS = "4000000000001117"  # the payments simulator's card that never answers
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Main Street",
    "city": "Ghent",
    "postal_code": "9000",
    "country": "BE",
}
ICE = {**ADDRESS, "city": "McMurdo", "country": "AQ"}  # the carrier refuses AQ

# name -> (request: card, quantity, address), (status, reason, decline_code), and the money
# the order's facts say was captured and refunded, in cents.
SCENARIOS = {
    "success": ((GOOD, 1, ADDRESS), ("CONFIRMED", None, None), (900, 0)),
    "out_of_stock": ((GOOD, 11, ADDRESS), ("FAILED", "out_of_stock", None), (0, 0)),
    "declined": (
        (INSUFFICIENT_FUNDS, 1, ADDRESS),
        ("FAILED", "payment_declined", "insufficient_funds"),
        (0, 0),
    ),
    "payment_timeout": (
        (NEVER_ANSWERS, 1, ADDRESS),
        ("FAILED", "payment_timeout", None),
        (0, 0),
    ),
    "shipping_failed": ((GOOD, 1, ICE), ("FAILED", "shipping_failed", None), (900, 900)),
    # cancelled while its capture hangs (before any money is taken)
    "cancelled": ((NEVER_ANSWERS, 1, ADDRESS), ("CANCELLED", None, None), (0, 0)),
}


def order_body(card: str, quantity: int, address: dict) -> dict:
    return {
        "items": [{"sku": "mug", "quantity": quantity}],
        "shipping_address": address,
        "payment": {"card": card},
    }


@pytest.mark.parametrize("mode", ["orchestration", "choreography"])
async def test_every_scenario_ends_the_same_in_both_modes(stack, tmp_path, mode):
    url, bus = stack
    settings = settings_for(
        url,
        tmp_path,
        bus_url=bus,
        admins="boss",
        saga_mode=mode,
        payments_call_timeout=1.0,  # choreography: the payment step's timeout
        # orchestration: a hanging capture's retries (>= 3.75 s) outlast the step's timeout
        # (2 s); the refund that follows it (same key) waits for them, so keep them few.
        payments_max_attempts=3,
        orders_step_timeout=2.0,  # orchestration: the saga's step timeout
        shipping_refuse_countries="AQ",
    )
    async with running_app(settings, MODULES) as (client, runtime):
        sagas = runtime.modules["orders"].facade
        _, boss = await user(client, "boss")
        _, buyer = await user(client)
        created = await client.post("/api/v1/products", headers=boss, json=MUG)
        assert created.status_code == 201, created.text

        async def place(card: str, quantity: int, address: dict) -> str:
            headers = {**buyer, "Idempotency-Key": uuid.uuid4().hex}
            answer = await client.post(
                "/api/v1/orders", headers=headers, json=order_body(card, quantity, address)
            )
            assert answer.status_code == 202, answer.text
            return str(answer.json()["id"])

        ids = dict(
            zip(
                SCENARIOS,
                await asyncio.gather(*(place(*request) for request, _, _ in SCENARIOS.values())),
                strict=True,
            )
        )
        cancelled = uuid.UUID(ids["cancelled"])
        answer = await client.post(f"/api/v1/orders/{cancelled}/cancel", headers=buyer)
        assert answer.status_code == 202, answer.text  # the route cancels in the order's mode
        assert await sagas.cancel(cancelled) is Note.DUPLICATE

        async def final(order_id: str) -> dict | None:
            answer = await client.get(f"/api/v1/orders/{order_id}", headers=buyer)
            assert answer.status_code == 200, answer.text
            order = answer.json()
            return order if order["status"] != "PENDING" else None

        ended = {name: await eventually(lambda i=i: final(i), within=40) for name, i in ids.items()}
        for name, (_, (status, reason, decline_code), (captured, refunded)) in SCENARIOS.items():
            order = ended[name]
            assert (order["status"], order["reason"], order.get("decline_code")) == (
                status,
                reason,
                decline_code,
            ), (mode, name, order)
            facts = [e.event for e in await sagas.history(uuid.UUID(ids[name]))]
            assert facts[0].saga_mode.value == mode
            money = tuple(
                sum(getattr(f, "amount_cents", 0) for f in facts if f.type == kind)
                for kind in ("PaymentCaptured", "PaymentRefunded")
            )
            assert money == (captured, refunded), (mode, name, facts)
            timeline = await sagas.timeline(uuid.UUID(ids[name]))
            assert timeline[0].message_type == "orders.OrderPlaced", (mode, name)
            assert {e.correlation_id for e in timeline} == {ids[name]}, (mode, name)

        # The administrators' list of sagas holds the orders of both modes, with their mode.
        failed = await client.get("/api/v1/admin/sagas?status=failed&limit=100", headers=boss)
        assert failed.status_code == 200, failed.text
        listed = {item["order_id"]: item for item in failed.json()["items"]}
        for name, (_, (status, _reason, _code), _money) in SCENARIOS.items():
            if status == "FAILED":
                assert listed[ids[name]]["mode"] == mode, (mode, name, listed)
        running = await client.get("/api/v1/admin/sagas?status=running", headers=boss)
        assert not set(ids.values()) & {item["order_id"] for item in running.json()["items"]}

        # A final order cannot be cancelled, in either mode.
        with pytest.raises(CancelRefused):
            await sagas.cancel(uuid.UUID(ids["success"]))

        async def stock() -> int:
            return (await client.get("/api/v1/products/mug")).json()["stock"]

        async def only_the_confirmed_mug_is_gone() -> bool:
            return await stock() == MUG["stock"] - 1

        await eventually(only_the_confirmed_mug_is_gone, within=20)


async def test_choreography_needs_payments_beside_orders_and_orchestration_does_not(tmp_path):
    for mode, modules in (("orchestration", ["orders"]), ("choreography", ["orders", "payments"])):
        url = f"sqlite+aiosqlite:///{tmp_path / f'{mode}.db'}"
        runtime = await assemble(settings_for(url, tmp_path, saga_mode=mode), modules)
        assert "orders" in runtime.modules
        await runtime.stop()
    url = f"sqlite+aiosqlite:///{tmp_path / 'alone.db'}"
    with pytest.raises(ConfigError, match="TOWNHALL_SAGA_MODE"):
        await assemble(settings_for(url, tmp_path, saga_mode="choreography"), ["orders"])
