"""Orders' read side and remaining routes over HTTP, on SQLite + the in-process bus and on
PostgreSQL + RabbitMQ: an order's events and saga timeline, the buyer's cancel, the buyer's
list of orders (read model `orders.summaries`), the administrators' sales per day (read model
`orders.sales`) and lists of sagas; and a rebuild of each read model from zero gives exactly
the rows the live projection wrote.

One scenario per stack drives three orders (confirmed, cancelled, declined) and checks every
route's answers on them, to keep the suite fast."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from support.app import running_app, settings_for
from support.notifications import eventually, user
from townhall.orders.adapters.tables import sales, sales_baskets, summaries
from townhall.platform.eventstore import Projections

pytestmark = pytest.mark.timeout(120)

MODULES = ["identity", "inventory", "payments", "shipping", "orders"]
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
SILENT_CARD = "4000000000001117"  # the simulator never answers: the capture is in flight
TEE = {"sku": "tee-m", "name": "T-shirt M", "price_cents": 1500, "currency": "EUR", "stock": 10}
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Main Street",
    "city": "Ghent",
    "postal_code": "9000",
    "country": "BE",
}
READ_MODELS = {
    "orders.summaries": [summaries],
    "orders.sales": [sales, sales_baskets],
}


@pytest.fixture
async def app(stack, tmp_path):
    url, bus = stack
    # The silent card's capture gives up after 2 s (one attempt): PaymentFailed, so an order
    # cancelled while it is in flight ends CANCELLED within moments.
    settings = settings_for(
        url,
        tmp_path,
        bus_url=bus,
        admins="boss",
        payments_call_timeout=2.0,
        payments_max_attempts=1,
    )
    async with running_app(settings, MODULES) as (client, runtime):
        _, boss = await user(client, "boss")
        created = await client.post("/api/v1/products", headers=boss, json=TEE)
        assert created.status_code == 201, created.text
        yield client, runtime, boss


def order_body(card: str) -> dict:
    return {
        "items": [{"sku": "tee-m", "quantity": 2}],
        "shipping_address": ADDRESS,
        "payment": {"card": card},
    }


async def place(client, headers, card: str) -> str:
    answer = await client.post(
        "/api/v1/orders",
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        json=order_body(card),
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def settled(client, headers, order_id: str) -> dict:
    async def check():
        answer = await client.get(f"/api/v1/orders/{order_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        order = answer.json()
        return order if order["status"] != "PENDING" else None

    return await eventually(check, within=30)


def assert_problem(answer, status: int, field: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in [error["field"] for error in answer.json()["errors"]], answer.text


def assert_causal(entries: list[dict]) -> None:
    seen: set[str] = set()
    ids = {entry["message_id"] for entry in entries}
    for entry in entries:
        if entry["causation_id"] in ids:
            assert entry["causation_id"] in seen, (entry, entries)
        seen.add(entry["message_id"])


async def read_model_rows(runtime, name: str) -> list[list[tuple]]:
    async with runtime.platform.database.connect() as conn:
        return [
            [tuple(row) for row in await conn.execute(sa.select(t).order_by(*t.primary_key))]
            for t in READ_MODELS[name]
        ]


async def test_events_timeline_cancel_my_orders_sales_sagas_and_rebuilds(app):
    client, runtime, boss = app
    buyer_id, buyer = await user(client)
    _, stranger = await user(client)

    confirmed = await place(client, buyer, GOOD_CARD)
    cancelled = await place(client, buyer, SILENT_CARD)
    # Cancel at once, while the saga reserves the stock or captures the payment: accepted.
    answer = await client.post(f"/api/v1/orders/{cancelled}/cancel", headers=buyer)
    assert answer.status_code == 202, answer.text
    # The order as it stands after the request: the wind-down needs two more replies.
    assert answer.json()["id"] == cancelled
    assert answer.json()["status"] in ("PENDING", "CANCELLED")
    again = await client.post(f"/api/v1/orders/{cancelled}/cancel", headers=buyer)
    assert again.status_code == 202, again.text  # a repeat is accepted, changes nothing
    declined = await place(client, buyer, DECLINED_CARD)

    assert (await settled(client, buyer, confirmed))["status"] == "CONFIRMED"
    assert (await settled(client, buyer, cancelled))["status"] == "CANCELLED"
    failed = await settled(client, buyer, declined)
    assert (failed["status"], failed["reason"]) == ("FAILED", "payment_declined")

    # -- cancel: refused once the shipment exists or the order failed; 404 for others ------
    refused = await client.post(f"/api/v1/orders/{confirmed}/cancel", headers=buyer)
    assert_problem(refused, 409)
    assert "shipment exists" in refused.json()["detail"]
    assert_problem(await client.post(f"/api/v1/orders/{declined}/cancel", headers=boss), 409)
    for path in ("cancel", "events", "timeline"):
        method = client.post if path == "cancel" else client.get
        for order_id in (confirmed, str(uuid.uuid4()), "not-an-id"):
            assert_problem(await method(f"/api/v1/orders/{order_id}/{path}", headers=stranger), 404)
    assert (await settled(client, buyer, cancelled))["status"] == "CANCELLED"

    # -- events: the order's own stream, in version order -----------------------------------
    answer = await client.get(f"/api/v1/orders/{confirmed}/events", headers=buyer)
    assert answer.status_code == 200, answer.text
    events = answer.json()["items"]
    assert [e["type"] for e in events] == [
        "OrderPlaced",
        "StockReserved",
        "PaymentCaptured",
        "ShipmentCreated",
        "OrderConfirmed",
    ]
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["data"]["buyer_id"] == buyer_id
    assert events[0]["data"]["total_cents"] == 3000
    assert all(e["correlation_id"] == confirmed for e in events)
    times = [datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times)
    by_admin = await client.get(f"/api/v1/orders/{cancelled}/events", headers=boss)
    assert [e["type"] for e in by_admin.json()["items"]][-1] == "OrderCancelled"

    # -- timeline: every message of the saga, each after its cause ---------------------------
    answer = await client.get(f"/api/v1/orders/{confirmed}/timeline", headers=buyer)
    assert answer.status_code == 200, answer.text
    timeline = answer.json()["items"]
    assert_causal(timeline)
    assert {e["correlation_id"] for e in timeline} == {confirmed}
    steps = [(e["module"], e["message_type"], e["outcome"]) for e in timeline]
    assert steps[:2] == [
        ("orders", "orders.OrderPlaced", "sent"),
        ("orders", "inventory.ReserveStock", "sent"),
    ]
    for step in (
        ("inventory", "inventory.StockReserved", "applied"),
        ("orders", "payments.CapturePayment", "sent"),
        ("payments", "payments.PaymentCaptured", "applied"),
        ("shipping", "shipping.ShipmentCreated", "applied"),
        ("orders", "orders.OrderConfirmed", "sent"),
    ):
        assert step in steps, (step, steps)
    refusal = timeline[-1]
    assert (refusal["message_type"], refusal["outcome"]) == ("orders.CancelOrder", "refused")
    assert refusal["detail"] == "the order's shipment exists"
    assert all(e["time"] and e["message_id"] for e in timeline)
    answer = await client.get(f"/api/v1/orders/{cancelled}/timeline", headers=boss)
    timeline = answer.json()["items"]
    assert_causal(timeline)
    outcomes = [(e["message_type"], e["outcome"]) for e in timeline]
    assert ("orders.CancelOrder", "applied") in outcomes
    assert ("orders.CancelOrder", "duplicate") in outcomes
    assert ("inventory.ReleaseStock", "sent") in outcomes
    assert ("orders.OrderCancelled", "sent") in outcomes

    # -- the buyer's orders: the read model follows the events, newest first -----------------
    ids = [declined, cancelled, confirmed]

    async def listed():
        answer = await client.get("/api/v1/me/orders", headers=buyer)
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        statuses = [item["status"] for item in items]
        return items if statuses == ["FAILED", "CANCELLED", "CONFIRMED"] else None

    items = await eventually(listed, within=30)
    assert [item["id"] for item in items] == ids
    for item in items:  # the read model says what the aggregate says
        from_events = await client.get(f"/api/v1/orders/{item['id']}", headers=buyer)
        assert item == from_events.json()
    first = await client.get("/api/v1/me/orders?limit=2", headers=buyer)
    assert [item["id"] for item in first.json()["items"]] == ids[:2]
    cursor = first.json()["next_cursor"]
    rest = await client.get("/api/v1/me/orders", headers=buyer, params={"cursor": cursor})
    assert [item["id"] for item in rest.json()["items"]] == ids[2:]
    assert rest.json()["next_cursor"] is None
    nothing = await client.get("/api/v1/me/orders", headers=stranger)
    assert nothing.json() == {"items": [], "next_cursor": None}
    for query, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": cursor[:-2]}, "cursor"),
    ):
        assert_problem(
            await client.get("/api/v1/me/orders", headers=buyer, params=query), 422, field
        )

    # -- sales per product per day: the confirmed order only ---------------------------------
    today = datetime.now(UTC).date()
    window = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}

    async def sold():
        answer = await client.get("/api/v1/admin/sales", headers=boss, params=window)
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["items"] else None

    report = await eventually(sold, within=30)
    assert report == {
        **window,
        "items": [
            {
                "day": str(today),
                "sku": "tee-m",
                "currency": "EUR",
                "quantity": 2,
                "revenue_cents": 3000,
                "orders": 1,
            }
        ],
    }
    before = {"from": "2020-01-01", "to": "2020-01-31"}
    answer = await client.get("/api/v1/admin/sales", headers=boss, params=before)
    assert answer.json()["items"] == []
    assert_problem(await client.get("/api/v1/admin/sales", headers=buyer, params=window), 403)
    for query, field in (
        ({"from": "2026-01-02", "to": "2026-01-01"}, "from"),
        ({"from": "2026-13-01", "to": "2026-12-31"}, "from"),
        ({"from": "20260101", "to": "2026-12-31"}, "from"),
        ({"from": "2026-01-01", "to": "2026-02-30"}, "to"),
        ({"from": "2026-01-01"}, "to"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "to"),
    ):
        answer = await client.get("/api/v1/admin/sales", headers=boss, params=query)
        assert_problem(answer, 422, field)

    # -- sagas that need a person ------------------------------------------------------------
    answer = await client.get("/api/v1/admin/sagas?status=failed", headers=boss)
    assert answer.status_code == 200, answer.text
    assert [s["order_id"] for s in answer.json()["items"]] == [declined]
    assert answer.json()["items"][0]["status"] == "FAILED"
    for status in ("running", "stuck"):
        answer = await client.get(f"/api/v1/admin/sagas?status={status}", headers=boss)
        assert answer.json() == {"items": [], "next_cursor": None}
    assert_problem(await client.get("/api/v1/admin/sagas?status=failed", headers=buyer), 403)
    for query, field in (
        ("status=lost", "status"),
        ("", "status"),
        ("status=failed&limit=0", "limit"),
        ("status=failed&cursor=xyz", "cursor"),
    ):
        answer = await client.get(f"/api/v1/admin/sagas?{query}", headers=boss)
        assert_problem(answer, 422, field)

    # -- a rebuild from zero gives the rows the live projection wrote -------------------------
    projections: Projections = runtime.platform.projections
    for name in READ_MODELS:
        head = await runtime.platform.eventstore.head_position()
        await projections.subscription(name).wait_for(head)
        live = await read_model_rows(runtime, name)
        assert all(live), (name, live)
        assert await projections.rebuild(name) > 0
        assert await read_model_rows(runtime, name) == live, name
