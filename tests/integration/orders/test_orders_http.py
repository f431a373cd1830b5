"""Orders end to end over HTTP, on SQLite + the in-process bus and on PostgreSQL + RabbitMQ,
with the embedded payment and carrier simulators: a buyer's order runs its saga to CONFIRMED
and takes its stock, a declined card ends FAILED with the stock back, a retried POST with the
same key is the same order, another body with it is refused, a missing key is a 400, and only
the buyer and administrators see an order."""

from __future__ import annotations

import uuid

import pytest

from support.app import running_app, settings_for
from support.notifications import eventually, user

pytestmark = pytest.mark.timeout(120)

MODULES = ["identity", "inventory", "payments", "shipping", "orders"]
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
TEE = {"sku": "tee-m", "name": "T-shirt M", "price_cents": 1500, "currency": "EUR", "stock": 2}
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Main Street",
    "city": "Ghent",
    "postal_code": "9000",
    "country": "BE",
}


@pytest.fixture
async def app(stack, tmp_path):
    url, bus = stack
    settings = settings_for(url, tmp_path, bus_url=bus, admins="boss")
    async with running_app(settings, MODULES) as (client, _runtime):
        _, boss = await user(client, "boss")
        _, buyer = await user(client)
        created = await client.post("/api/v1/products", headers=boss, json=TEE)
        assert created.status_code == 201, created.text
        yield client, boss, buyer


def body(card: str = GOOD_CARD, quantity: int = 1) -> dict:
    return {
        "items": [{"sku": "tee-m", "quantity": quantity}],
        "shipping_address": ADDRESS,
        "payment": {"card": card},
    }


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def stock(client) -> int:
    return (await client.get("/api/v1/products/tee-m")).json()["stock"]


async def settled(client, headers, order_id: str) -> dict:
    async def check():
        answer = await client.get(f"/api/v1/orders/{order_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        order = answer.json()
        return order if order["status"] != "PENDING" else None

    return await eventually(check, within=30)


async def test_a_paid_order_is_confirmed_and_takes_its_stock(app):
    client, boss, buyer = app
    answer = await client.post("/api/v1/orders", headers={**buyer, **key()}, json=body())
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status"] == "PENDING"
    order = await settled(client, buyer, accepted["id"])
    assert order["status"] == "CONFIRMED", order
    assert order["total_cents"] == 1500
    assert order["currency"] == "EUR"
    assert order["items"] == [{"sku": "tee-m", "quantity": 1, "unit_price_cents": 1500}]
    assert order["reason"] is None
    assert await stock(client) == 1
    seen_by_admin = await client.get(f"/api/v1/orders/{accepted['id']}", headers=boss)
    assert seen_by_admin.status_code == 200
    assert seen_by_admin.json()["status"] == "CONFIRMED"


async def test_a_declined_card_fails_the_order_and_gives_the_stock_back(app):
    client, _, buyer = app
    answer = await client.post(
        "/api/v1/orders", headers={**buyer, **key()}, json=body(DECLINED_CARD)
    )
    assert answer.status_code == 202, answer.text
    order = await settled(client, buyer, answer.json()["id"])
    assert order["status"] == "FAILED", order
    assert order["reason"] == "payment_declined"

    async def stock_back():
        return await stock(client) == 2

    await eventually(stock_back)


async def test_a_retried_post_with_the_same_key_is_the_same_order(app):
    client, _, buyer = app
    headers = {**buyer, **key()}
    first = await client.post("/api/v1/orders", headers=headers, json=body())
    again = await client.post("/api/v1/orders", headers=headers, json=body())
    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    other = await client.post("/api/v1/orders", headers=headers, json=body(quantity=2))
    assert other.status_code == 422, other.text
    order = await settled(client, buyer, first.json()["id"])
    assert order["status"] == "CONFIRMED"
    assert await stock(client) == 1  # one order, not two


async def test_another_user_does_not_see_the_order(app):
    client, _, buyer = app
    answer = await client.post("/api/v1/orders", headers={**buyer, **key()}, json=body())
    assert answer.status_code == 202, answer.text
    _, stranger = await user(client)
    seen = await client.get(f"/api/v1/orders/{answer.json()['id']}", headers=stranger)
    assert seen.status_code == 404
    unknown = await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=buyer)
    assert unknown.status_code == 404


async def test_an_order_without_an_idempotency_key_is_a_400_naming_it(app):
    client, _, buyer = app
    answer = await client.post("/api/v1/orders", headers=buyer, json=body())
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "Idempotency-Key" in answer.text
    assert await stock(client) == 2


async def test_an_unknown_sku_is_a_422_naming_the_field(app):
    client, _, buyer = app
    bad = body()
    bad["items"] = [{"sku": "nope", "quantity": 1}]
    answer = await client.post("/api/v1/orders", headers={**buyer, **key()}, json=bad)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["items.0.sku"]
