"""What the notifications routes (and the profile fields they depend on) refuse up front: a 422
problem naming the field, never a 202 or 200 that fails later or means something else.

The rules are the edge's, not the database's or the bus's: one stack (SQLite, the in-process
bus, the built-in sinks) shows them.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from support.app import running_app, settings_for
from support.notifications import user

pytestmark = pytest.mark.timeout(60)

PROBLEM = "application/problem+json"


@pytest.fixture
async def app(tmp_path):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", tmp_path, admins="boss")
    async with running_app(settings) as (client, _):
        _, boss = await user(client, "boss")
        uid, auth = await user(client, email="ann@example.org")
        yield client, boss, uid, auth


def refused_fields(answer: httpx.Response) -> list[str]:
    """The fields a 422 problem names (asserting it is one)."""
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    return [error["field"] for error in answer.json()["errors"]]


def raw_notification(uid: str, **changes: Any) -> dict[str, Any]:
    return {"recipient": uid, "channels": ["in_app"], "subject": "Hi", "body": "b", **changes}


# --- item 6: Idempotency-Key -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [b"", b"k" * 256, "clé".encode("latin-1"), b"k\x7f", b"k\tk"],
    ids=["empty", "256 characters", "non-ASCII", "DEL", "tab"],
)
async def test_an_idempotency_key_is_1_to_255_printable_ascii_characters(app, key: bytes):
    client, boss, uid, _ = app
    headers = [*boss.items(), ("Idempotency-Key", key)]
    answer = await client.post("/api/v1/notifications", headers=headers, json=raw_notification(uid))
    assert refused_fields(answer) == ["Idempotency-Key"]
    assert answer.json()["errors"][0]["in"] == "header"


async def test_an_empty_idempotency_key_never_answers_with_another_requests_notification(app):
    client, boss, uid, _ = app
    headers = {**boss, "Idempotency-Key": ""}
    first = await client.post(
        "/api/v1/notifications", headers=headers, json=raw_notification(uid, body="one")
    )
    second = await client.post(
        "/api/v1/notifications", headers=headers, json=raw_notification(uid, body="two")
    )
    assert refused_fields(first) == refused_fields(second) == ["Idempotency-Key"]


async def test_a_key_of_255_printable_characters_is_taken(app):
    client, boss, uid, _ = app
    key = ("a b~!" * 51)[:255]
    headers = {**boss, "Idempotency-Key": key}
    first = await client.post("/api/v1/notifications", headers=headers, json=raw_notification(uid))
    again = await client.post("/api/v1/notifications", headers=headers, json=raw_notification(uid))
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]


# --- item 10: a subject is one line ----------------------------------------------------------


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: eve@example.org", "Hi\nthere", "Hi\rthere"])
async def test_a_subject_with_a_line_break_is_refused_up_front(app, subject: str):
    client, boss, uid, _ = app
    answer = await client.post(
        "/api/v1/notifications",
        headers=boss,
        json=raw_notification(uid, channels=["email"], subject=subject),
    )
    assert refused_fields(answer) == ["subject"]


# --- item 15: template data values are scalars -----------------------------------------------


@pytest.mark.parametrize("value", [{"x": 1}, [1, 2], []], ids=["object", "list", "empty list"])
async def test_template_data_that_is_not_a_scalar_is_refused_naming_its_key(app, value: Any):
    client, boss, uid, _ = app
    body = {
        "recipient": uid,
        "channels": ["in_app"],
        "template": "security",
        "data": {"name": "Ann", "event": value, "occurred_at": "noon"},
    }
    answer = await client.post("/api/v1/notifications", headers=boss, json=body)
    assert refused_fields(answer) == ["data.event"]
    assert "data 'event'" in answer.json()["detail"]


async def test_template_data_scalars_are_accepted(app):
    client, boss, uid, _ = app
    body = {
        "recipient": uid,
        "channels": ["in_app"],
        "template": "security",
        "data": {"name": None, "event": True, "occurred_at": 1.5, "count": 3},
    }
    answer = await client.post("/api/v1/notifications", headers=boss, json=body)
    assert answer.status_code == 202, answer.text


# --- items 12 and 13: quiet hours and time zones ---------------------------------------------


async def put_quiet_hours(client: httpx.AsyncClient, auth: dict[str, str], **quiet: Any):
    return await client.put(
        "/api/v1/me/notification-preferences", headers=auth, json={"quiet_hours": quiet}
    )


@pytest.mark.parametrize(
    "start",
    ["22:00:30+02:00", "22:00:30", "22:00:00", "22:00+02:00", "22:00Z", "7:00", "24:00", 79200],
)
async def test_quiet_hours_are_hh_mm_without_seconds_or_offset(app, start: Any):
    client, _, _, auth = app
    answer = await put_quiet_hours(client, auth, start=start, end="07:00", time_zone="UTC")
    assert refused_fields(answer) == ["quiet_hours.start"]
    assert (await client.get("/api/v1/me/notification-preferences", headers=auth)).json()[
        "quiet_hours"
    ] is None


async def test_quiet_hours_in_hh_mm_are_stored_as_given(app):
    client, _, _, auth = app
    answer = await put_quiet_hours(
        client, auth, start="22:30", end="07:00", time_zone="Europe/Paris"
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["quiet_hours"] == {
        "start": "22:30",
        "end": "07:00",
        "time_zone": "Europe/Paris",
    }


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "Mars/Olympus", ""])
async def test_quiet_hours_take_only_an_iana_time_zone_name(app, zone: str):
    client, _, _, auth = app
    answer = await put_quiet_hours(client, auth, start="22:00", end="07:00", time_zone=zone)
    assert refused_fields(answer) == ["quiet_hours.time_zone"]
    assert "IANA time zone name" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "Mars/Olympus"])
async def test_a_profile_takes_only_an_iana_time_zone_name(app, zone: str):
    client, _, _, auth = app
    answer = await client.patch("/api/v1/me", headers=auth, json={"time_zone": zone})
    assert refused_fields(answer) == ["time_zone"]
    assert "IANA time zone name" in answer.json()["detail"]
    me = await client.get("/api/v1/me", headers=auth)
    assert me.json()["time_zone"] == "UTC"
    fine = await client.patch("/api/v1/me", headers=auth, json={"time_zone": "Asia/Tokyo"})
    assert fine.status_code == 200 and fine.json()["time_zone"] == "Asia/Tokyo"


# --- item 14: inbox cursors ------------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["abc", "' OR 1=1 --", "1", "00000000-0000-0000-0000"])
async def test_a_malformed_inbox_cursor_is_refused(app, cursor: str):
    client, _, _, auth = app
    answer = await client.get("/api/v1/me/inbox", headers=auth, params={"cursor": cursor})
    assert refused_fields(answer) == ["cursor"]
    assert answer.json()["errors"][0]["in"] == "query"


async def test_a_well_formed_cursor_pages_even_past_every_item(app):
    client, _, _, auth = app
    answer = await client.get(
        "/api/v1/me/inbox", headers=auth, params={"cursor": str(uuid.UUID(int=0))}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == [] and answer.json()["next_cursor"] is None


# --- item 17: phone numbers ------------------------------------------------------------------


async def test_a_phone_number_in_e164_form_that_is_not_valid_is_told_so(app):
    client, _, _, auth = app
    answer = await client.patch("/api/v1/me", headers=auth, json={"phone": "+15551234567"})
    assert refused_fields(answer) == ["phone"]
    message = answer.json()["errors"][0]["message"]
    assert "+15551234567 is in E.164 form but is not a valid phone number" in message
    assert "+1" in message


@pytest.mark.parametrize("phone", ["0612345678", "15551234567", "+1-call-me", "+"])
async def test_a_phone_number_not_in_e164_form_is_told_so(app, phone: str):
    client, _, _, _ = app
    answer = await client.post(
        "/api/v1/auth/register",
        json={"username": f"u{uuid.uuid4().hex[:8]}", "password": "x" * 12, "phone": phone},
    )
    assert refused_fields(answer) == ["phone"]
    assert "not in E.164 form" in answer.json()["errors"][0]["message"]
