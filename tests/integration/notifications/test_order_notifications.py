"""The buyer hears about their order through notifications, by event, end to end over HTTP on
SQLite + the in-process bus and on PostgreSQL + RabbitMQ, with the payment and carrier
simulators and a real SMTP receiver: a paid order is confirmed, then shipped (in-app and
email); a declined card fails it, with the reason in words; a buyer without an email address
is told in-app only; a redelivered event notifies once."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from support.app import running_app, settings_for
from support.databases import outbox_envelopes
from support.notifications import eventually, user
from support.smtp_receiver import SmtpReceiver
from townhall.notifications.adapters.tables import notifications
from townhall.orders import events as orders

pytestmark = pytest.mark.timeout(120)

MODULES = ["identity", "notifications", "inventory", "payments", "shipping", "orders"]
GOOD_CARD = "4242424242424242"
INSUFFICIENT_FUNDS_CARD = "4000000000009995"
TEE = {"sku": "tee-m", "name": "T-shirt M", "price_cents": 1500, "currency": "EUR", "stock": 5}
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Main Street",
    "city": "Ghent",
    "postal_code": "9000",
    "country": "BE",
}


@pytest.fixture
def smtp():
    with SmtpReceiver() as receiver:
        yield receiver


async def place(client, buyer, card: str) -> str:
    answer = await client.post(
        "/api/v1/orders",
        headers={**buyer, "Idempotency-Key": uuid.uuid4().hex},
        json={
            "items": [{"sku": "tee-m", "quantity": 1}],
            "shipping_address": ADDRESS,
            "payment": {"card": card},
        },
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def inbox(client, auth) -> list[dict]:
    """The user's in-app items about orders, newest first."""
    answer = await client.get("/api/v1/me/inbox", headers=auth)
    assert answer.status_code == 200, answer.text
    return [i for i in answer.json()["items"] if i["category"] == "orders"]


async def subjects(client, auth) -> list[str]:
    return sorted(i["subject"] for i in await inbox(client, auth))


async def told(client, auth, *wanted: str) -> dict[str, dict]:
    """Wait for items with the `wanted` subjects; the items by subject."""

    async def arrived():
        items = {i["subject"]: i for i in await inbox(client, auth)}
        return items if set(wanted) <= set(items) else None

    return await eventually(arrived, within=30)


async def order_notices(database, recipient: str) -> list[str]:
    """The templates of the notifications recorded for `recipient` about orders."""
    query = sa.select(notifications.c.template).where(
        notifications.c.recipient == recipient, notifications.c.category == "orders"
    )
    async with database.connect() as conn:
        return sorted(row.template for row in (await conn.execute(query)).all())


async def emailed(smtp: SmtpReceiver, notification_id: str) -> bytes:
    async def arrived():
        return smtp.receiver.by_notification()[notification_id]

    await eventually(arrived, within=30)
    [mail] = [m for m in smtp.receiver.messages if notification_id.encode() in m]
    return mail


async def test_the_buyer_is_told_of_confirmation_shipping_and_failure_once_each(
    stack, smtp, tmp_path
):
    database_url, bus = stack
    settings = settings_for(database_url, tmp_path, bus_url=bus, smtp_url=smtp.url, admins="boss")
    async with running_app(settings, MODULES) as (client, runtime):
        _, boss = await user(client, "boss")
        created = await client.post("/api/v1/products", headers=boss, json=TEE)
        assert created.status_code == 201, created.text
        ada_id, ada = await user(client, email="ada@example.org")
        database = runtime.platform.database

        # A paid order: confirmed, then shipped, in the inbox and by email.
        order_id = await place(client, ada, GOOD_CARD)
        items = await told(client, ada, "Your order is confirmed", "Your order has shipped")
        confirmed, shipped = items["Your order is confirmed"], items["Your order has shipped"]
        assert order_id in confirmed["body"] and "15.00 EUR" in confirmed["body"]
        assert order_id in shipped["body"] and "Tracking number: SIM" in shipped["body"]
        mail = await emailed(smtp, confirmed["id"])
        assert b"To: ada@example.org" in mail and b"Subject: Your order is confirmed" in mail
        assert b"15.00 EUR" in mail
        mail = await emailed(smtp, shipped["id"])
        assert b"Subject: Your order has shipped" in mail and b"Tracking number: SIM" in mail

        # The OrderConfirmed event again, in the group's own handler: as redelivered (the
        # same envelope) and as republished (a copy): nothing new for the buyer. A handler
        # records what it asks for before it returns, so this is read at once.
        [event] = [
            e
            for topic, e in await outbox_envelopes(database)
            if topic == orders.TOPIC and e.type == orders.OrderConfirmed.type
        ]
        assert event.payload["order_id"] == order_id
        [spec] = [
            c
            for c in runtime.consumers
            if (c.topic, c.group) == (orders.TOPIC, "notifications.orders")
        ]
        handler = spec.handler_factory()
        await handler(event)
        await handler(type(event)(type=event.type, key=event.key, payload=event.payload))
        assert await order_notices(database, ada_id) == ["order_confirmed", "order_shipped"]
        assert await subjects(client, ada) == ["Your order has shipped", "Your order is confirmed"]

        # A declined card: failed, with the reason in words, no shipping notice.
        failed_id = await place(client, ada, INSUFFICIENT_FUNDS_CARD)
        items = await told(client, ada, "Your order failed")
        failed = items["Your order failed"]
        assert failed_id in failed["body"]
        assert "your card has insufficient funds" in failed["body"]
        mail = await emailed(smtp, failed["id"])
        assert b"your card has insufficient funds" in mail
        assert await subjects(client, ada) == [
            "Your order failed",
            "Your order has shipped",
            "Your order is confirmed",
        ]

        # A buyer without an email address: told in-app; the email is skipped, not sent.
        _, bob = await user(client)
        await place(client, bob, INSUFFICIENT_FUNDS_CARD)
        items = await told(client, bob, "Your order failed")
        notice_id = items["Your order failed"]["id"]

        async def email_skipped():
            answer = await client.get(f"/api/v1/notifications/{notice_id}", headers=bob)
            assert answer.status_code == 200, answer.text
            email = answer.json()["channels"]["email"]
            return email if email["status"] == "SKIPPED" else None

        assert (await eventually(email_skipped))["skip_reason"] == "no_contact_point"

        counts = smtp.receiver.by_notification()
        assert [counts[i] for i in (confirmed["id"], shipped["id"], failed["id"])] == [1, 1, 1]
        assert counts[notice_id] == 0
