"""The dev outbox shows what the built-in sinks received, email, SMS and push; when the delivery
workers run in other processes, it says so and where the messages are instead of looking empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from support.app import settings_for
from support.notifications import eventually, user
from townhall.bootstrap import assemble

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def edge(tmp_path, *, consumers: bool) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the embedded defaults (every sink on), with or without its consumer groups
    (`serve` or `serve --no-consumers`)."""
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}", tmp_path, admins="boss")
    runtime = await assemble(settings)
    app = runtime.create_app()
    await runtime.start(groups=None if consumers else [])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://townhall") as client:
            yield client
    finally:
        await runtime.stop()


async def notify_everywhere(client: httpx.AsyncClient) -> dict[str, str]:
    _, boss = await user(client, "boss")
    uid, auth = await user(client, email="ann@example.org", phone="+14155550100")
    device = {"platform": "fcm", "token": "device-token-1"}
    assert (await client.post("/api/v1/me/devices", headers=auth, json=device)).status_code == 201
    body = {
        "recipient": uid,
        "channels": ["email", "sms", "push"],
        "subject": "Doors open",
        "body": "at seven",
    }
    answer = await client.post("/api/v1/notifications", headers=boss, json=body)
    assert answer.status_code == 202, answer.text
    return boss


async def test_the_outbox_shows_email_sms_and_push_from_the_sinks(tmp_path):
    async with edge(tmp_path, consumers=True) as client:
        boss = await notify_everywhere(client)

        async def all_three():
            outbox = (await client.get("/api/v1/dev/outbox", headers=boss)).json()
            arrived = [m for m in outbox["items"] if m["subject"] == "Doors open"]
            return outbox if arrived and outbox["sms"] and outbox["push"] else None

        outbox = await eventually(all_three)
        assert outbox["sms"][0]["to"] == "+14155550100"
        assert outbox["sms"][0]["body"] == "at seven"
        assert (outbox["push"][0]["token"], outbox["push"][0]["title"]) == (
            "device-token-1",
            "Doors open",
        )
        assert outbox["delivered_here"] == outbox["sinks"] == ["email", "sms", "push"]
        assert outbox["note"] is None
        page = await client.get("/dev/outbox")
        assert page.status_code == 200
        for shown in ("Doors open", "+14155550100", "device-token-1", "<h2>SMS</h2>"):
            assert shown in page.text


async def test_without_delivery_workers_here_the_outbox_says_where_the_messages_are(tmp_path):
    async with edge(tmp_path, consumers=False) as client:
        boss = await notify_everywhere(client)
        outbox = (await client.get("/api/v1/dev/outbox", headers=boss)).json()
        assert outbox["delivered_here"] == []
        note = outbox["note"]
        for named in ("notifications.email", "notifications.sms", "notifications.push"):
            assert named in note
        assert "townhall worker" in note and "sink received email" in note
        page = await client.get("/dev/outbox")
        assert "townhall worker" in page.text
