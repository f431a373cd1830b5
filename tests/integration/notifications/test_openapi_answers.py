"""The OpenAPI description of every notifications route says the shape of what it answers:
the fields the route really sends, their enum values, nothing left as a free-form object."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.app import settings_for
from support.notifications import eventually, status_of, user
from townhall.bootstrap import assemble

pytestmark = pytest.mark.timeout(60)

TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def conforms(value: Any, schema: dict[str, Any], spec: dict[str, Any], where: str) -> None:
    """Assert `value` has exactly the shape `schema` describes (fields, types, enums)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if value is None:
            assert len(options) < len(schema["anyOf"]), f"{where}: null is not allowed"
            return
        (option,) = options
        conforms(value, option, spec, where)
        return
    assert "type" in schema or "enum" in schema, f"{where}: undescribed ({schema})"
    if "enum" in schema:
        assert value in schema["enum"], (where, value, schema["enum"])
    if "type" in schema:
        assert isinstance(value, TYPES[schema["type"]]), (where, value, schema["type"])
    if schema.get("type") == "array":
        for i, item in enumerate(value):
            conforms(item, schema["items"], spec, f"{where}[{i}]")
    if schema.get("type") == "object":
        properties = schema.get("properties")
        if properties is not None:
            assert set(value) == set(properties), (where, sorted(value), sorted(properties))
            for key, item in value.items():
                conforms(item, properties[key], spec, f"{where}.{key}")
        else:
            values = schema.get("additionalProperties")
            assert isinstance(values, dict) and values, f"{where}: a free-form object"
            for key, item in value.items():
                if "propertyNames" in schema:
                    conforms(key, schema["propertyNames"], spec, f"{where} key")
                conforms(item, values, spec, f"{where}.{key}")


def answer_schema(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    return dict(response["content"]["application/json"]["schema"])


async def test_each_answer_matches_the_shape_its_route_documents(tmp_path):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}", tmp_path, admins="boss")
    runtime = await assemble(settings)
    app = runtime.create_app()
    await runtime.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://townhall") as client:
            spec = (await client.get("/openapi.json")).json()
            _, boss = await user(client, "boss")
            uid, auth = await user(client, email="ann@example.org", phone="+14155550100")
            calls: list[tuple[str, str, str, dict[str, str], Any]] = [
                ("POST", "/me/devices", "", auth, {"platform": "fcm", "token": "device-1"}),
                ("GET", "/me/devices", "", auth, None),
                (
                    "PUT",
                    "/me/notification-preferences",
                    "",
                    auth,
                    {
                        "opted_out": [{"category": "news", "channel": "sms"}],
                        "quiet_hours": {"start": "22:00", "end": "07:00"},
                    },
                ),
                ("GET", "/me/notification-preferences", "", auth, None),
            ]
            body = {
                "recipient": uid,
                "channels": ["email", "sms", "push", "in_app"],
                "subject": "Doors open",
                "body": "at seven",
            }
            accepted = await client.post("/api/v1/notifications", headers=boss, json=body)
            assert accepted.status_code == 202, accepted.text
            conforms(
                accepted.json(),
                answer_schema(spec, "POST", "/api/v1/notifications", 202),
                spec,
                "POST /notifications",
            )
            nid = accepted.json()["id"]

            async def delivered() -> bool:
                status = await status_of(client, boss, nid)
                return status["status"] in ("SENT", "FAILED")

            await eventually(delivered)
            calls += [
                ("GET", "/notifications/{notification_id}", f"/notifications/{nid}", auth, None),
                ("GET", "/me/inbox", "/me/inbox?limit=1", auth, None),
                ("GET", "/me/inbox/unread-count", "", auth, None),
                ("POST", "/me/inbox/read-all", "", auth, None),
                ("GET", "/dev/outbox", "", boss, None),
            ]
            for method, path, url, headers, json in calls:
                answer = await client.request(
                    method, "/api/v1" + (url or path), headers=headers, json=json
                )
                assert answer.status_code in (200, 201), (method, path, answer.text)
                schema = answer_schema(spec, method, "/api/v1" + path, answer.status_code)
                conforms(answer.json(), schema, spec, f"{method} {path}")
    finally:
        await runtime.stop()
