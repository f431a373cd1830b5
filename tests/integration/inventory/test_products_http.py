"""The catalogue over HTTP, on SQLite and on PostgreSQL: anyone reads it, administrators create
products, change prices and names, and restock or correct the stock (never below what orders
hold); every refusal is a problem naming the field."""

from __future__ import annotations

import pytest

from support.app import running_app, settings_for
from support.notifications import eventually, user
from townhall.inventory.events import COMMAND_TOPIC, ReserveStock, StockLine
from townhall.platform.messaging import Envelope

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def app(database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, admins="boss")
    async with running_app(settings, ["identity", "inventory"]) as (client, runtime):
        _, boss = await user(client, "boss")
        _, member = await user(client)
        yield client, runtime, boss, member


TEE = {"sku": "tee-m", "name": "T-shirt M", "price_cents": 1500, "currency": "EUR", "stock": 5}


async def create(client, admin, **fields):
    answer = await client.post("/api/v1/products", headers=admin, json={**TEE, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def field_of(answer) -> list[str]:
    assert answer.headers["content-type"].startswith("application/problem+json")
    return [error["field"] for error in answer.json().get("errors", [])]


async def test_an_administrator_creates_a_product_and_everyone_sees_it(app):
    client, _, boss, member = app
    answer = await client.post("/api/v1/products", headers=boss, json=TEE)
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == "/api/v1/products/tee-m"
    expected = {k: TEE[k] for k in ("sku", "name", "price_cents", "currency", "stock")}
    assert answer.json() == expected
    listed = await client.get("/api/v1/products", headers=member)
    assert listed.json() == {"items": [expected], "next_cursor": None}
    anonymous = await client.get("/api/v1/products")
    assert anonymous.status_code == 200
    assert (await client.get("/api/v1/products/tee-m")).json() == expected


async def test_only_administrators_change_the_catalogue(app):
    client, _, boss, member = app
    await create(client, boss)
    for method, path, body in [
        ("POST", "/api/v1/products", {**TEE, "sku": "mug"}),
        ("PATCH", "/api/v1/products/tee-m", {"price_cents": 1}),
        ("POST", "/api/v1/products/tee-m/stock", {"delta": 1, "reason": "x"}),
    ]:
        answer = await client.request(method, path, headers=member, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        unsigned = await client.request(method, path, json=body)
        assert unsigned.status_code == 401
    assert (await client.get("/api/v1/products/tee-m")).json()["price_cents"] == 1500
    assert (await client.get("/api/v1/products/mug")).status_code == 404


async def test_a_taken_sku_is_a_conflict(app):
    client, _, boss, _ = app
    await create(client, boss)
    again = await client.post("/api/v1/products", headers=boss, json={**TEE, "name": "Other"})
    assert again.status_code == 409
    assert field_of(again) == ["sku"]
    assert (await client.get("/api/v1/products/tee-m")).json()["name"] == "T-shirt M"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sku": ""}, "sku"),
        ({"sku": "   "}, "sku"),
        ({"price_cents": -1}, "price_cents"),
        ({"price_cents": "12"}, "price_cents"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"stock": -1}, "stock"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(app, change, field):
    client, _, boss, _ = app
    answer = await client.post("/api/v1/products", headers=boss, json={**TEE, **change})
    assert answer.status_code == 422, answer.text
    assert field_of(answer) == [field]
    assert (await client.get("/api/v1/products")).json()["items"] == []


async def test_a_price_and_a_name_change(app):
    client, _, boss, _ = app
    await create(client, boss)
    answer = await client.patch("/api/v1/products/tee-m", headers=boss, json={"price_cents": 1800})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["price_cents"], answer.json()["name"]) == (1800, "T-shirt M")
    renamed = await client.patch("/api/v1/products/tee-m", headers=boss, json={"name": "Tee"})
    assert (renamed.json()["price_cents"], renamed.json()["name"]) == (1800, "Tee")
    bad = await client.patch("/api/v1/products/tee-m", headers=boss, json={"price_cents": -3})
    assert bad.status_code == 422 and field_of(bad) == ["price_cents"]
    stock = await client.patch("/api/v1/products/tee-m", headers=boss, json={"stock": 99})
    assert stock.status_code == 422
    missing = await client.patch("/api/v1/products/nothing", headers=boss, json={"name": "x"})
    assert missing.status_code == 404


async def test_stock_never_falls_below_what_orders_hold(app):
    client, runtime, boss, _ = app
    await create(client, boss)
    restock = await client.post(
        "/api/v1/products/tee-m/stock", headers=boss, json={"delta": 5, "reason": "restock"}
    )
    assert restock.status_code == 200, restock.text
    assert restock.json()["stock"] == 10
    command = ReserveStock("order-1", (StockLine("tee-m", 4),))
    await runtime.platform.bus.publish(
        COMMAND_TOPIC, Envelope(type=command.type, key="order-1", payload=command.to_payload())
    )

    async def reserved() -> bool:
        answer = await client.get("/api/v1/products/tee-m")
        return bool(answer.json()["stock"] == 6)

    await eventually(reserved)
    too_much = await client.post(
        "/api/v1/products/tee-m/stock", headers=boss, json={"delta": -7, "reason": "count"}
    )
    assert too_much.status_code == 409, too_much.text
    assert "4 reserved" in too_much.json()["detail"]
    assert field_of(too_much) == ["delta"]
    exact = await client.post(
        "/api/v1/products/tee-m/stock", headers=boss, json={"delta": -6, "reason": "count"}
    )
    assert (exact.status_code, exact.json()["stock"]) == (200, 0)
    for body, field in [({"delta": 0, "reason": "x"}, "delta"), ({"delta": 1}, "reason")]:
        bad = await client.post("/api/v1/products/tee-m/stock", headers=boss, json=body)
        assert bad.status_code == 422 and field_of(bad) == [field]
    unknown = await client.post(
        "/api/v1/products/nothing/stock", headers=boss, json={"delta": 1, "reason": "restock"}
    )
    assert unknown.status_code == 404


async def test_the_catalogue_comes_in_cursor_pages(app):
    client, _, boss, _ = app
    skus = [f"sku-{n:02d}" for n in range(25)]
    for sku in reversed(skus):
        await create(client, boss, sku=sku)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/products", params=params)).json()
        seen += [item["sku"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == skus
    default = (await client.get("/api/v1/products")).json()
    assert len(default["items"]) == 20
    for params in [{"limit": 0}, {"limit": 101}, {"cursor": "!!"}, {"cursor": "c2t1LTAx="}]:
        bad = await client.get("/api/v1/products", params=params)
        assert bad.status_code == 422, params
        assert field_of(bad) == [next(iter(params))]
