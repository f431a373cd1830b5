"""Text the database cannot store (NUL, a lone surrogate) is a 422 naming the field, on every
route of the app, on SQLite and PostgreSQL alike. The cases are generated from the app's own
OpenAPI description, so a route added later is covered without touching this file."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from support.app import PASSWORD, bearer, register_and_sign_in, running_app, settings_for

PROBLEM = "application/problem+json"
NUL_TEXT = "x\x00y"


@pytest.fixture
async def app_client(database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, admins="root")
    async with running_app(settings) as (client, _):
        tokens = await register_and_sign_in(client, "root")
        yield client, bearer(tokens)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _text_samples(spec: dict[str, Any], schema: dict[str, Any]) -> list[tuple[Any, str]]:
    """(value holding NUL somewhere, dotted path to it) for each place text fits in `schema`."""
    schema = _resolve(spec, schema)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        if _resolve(spec, option).get("type") != "null":
            return _text_samples(spec, option)
    kind = schema.get("type")
    if kind == "string" or "enum" in schema or "const" in schema:
        return [(NUL_TEXT, "")]
    if kind == "array":
        return [([value], _join("0", path)) for value, path in _text_samples(spec, schema["items"])]
    if kind == "object":
        samples = []
        for name, prop in schema.get("properties", {}).items():
            samples += [
                ({name: value}, _join(name, path)) for value, path in _text_samples(spec, prop)
            ]
        if schema.get("additionalProperties", True) is not False and not schema.get("properties"):
            samples.append(({"key": NUL_TEXT}, "key"))
        return samples
    return []


def _join(head: str, tail: str) -> str:
    return f"{head}.{tail}" if tail else head


def cases_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One request per (route, place that takes text): path, query, header or body field."""
    cases = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            plain_path = template
            for parameter in parameters:
                if parameter["in"] == "path":
                    plain_path = plain_path.replace("{" + parameter["name"] + "}", "p1")
            for parameter in parameters:
                if not _text_samples(spec, parameter.get("schema", {})):
                    continue
                name, where = parameter["name"], parameter["in"]
                case = {"method": method, "url": plain_path, "in": where, "field": name}
                if where == "path":
                    case["url"] = template.replace("{" + name + "}", quote(NUL_TEXT)).replace(
                        "{", ""
                    )
                    for other in parameters:
                        if other["in"] == "path":
                            case["url"] = case["url"].replace(other["name"] + "}", "p1")
                elif where == "query":
                    case["params"] = {name: NUL_TEXT}
                elif where == "header":
                    case["headers"] = {name: NUL_TEXT}
                cases.append(case)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                for value, path in _text_samples(spec, body["schema"]):
                    cases.append(
                        {
                            "method": method,
                            "url": plain_path,
                            "in": "body",
                            "field": path or "body",
                            "json": value,
                        }
                    )
    return cases


async def test_every_route_refuses_text_the_database_cannot_store_naming_the_field(app_client):
    client, auth = app_client
    spec = (await client.get("/openapi.json")).json()
    cases = cases_of(spec)
    seen = {
        (case["method"], case["url"].split("?")[0], case["in"], case["field"]) for case in cases
    }
    # The places of the report are among those generated.
    for expected in [
        ("post", "/api/v1/auth/register", "body", "display_name"),
        ("post", "/api/v1/auth/token", "body", "username"),
        ("patch", "/api/v1/me", "body", "display_name"),
        ("post", "/api/v1/notifications", "body", "body"),
        ("post", "/api/v1/notifications", "body", "subject"),
        ("post", "/api/v1/notifications", "body", "data.key"),
        ("post", "/api/v1/notifications", "header", "Idempotency-Key"),
        ("post", "/api/v1/me/devices", "body", "token"),
        ("get", "/api/v1/me/inbox", "query", "cursor"),
    ]:
        assert expected in seen, expected
    assert any(c["in"] == "path" and "notifications" in c["url"] for c in cases)
    assert any(c["in"] == "path" and "inbox" in c["url"] for c in cases)

    failures = []
    for case in cases:
        answer = await client.request(
            case["method"].upper(),
            case["url"],
            params=case.get("params"),
            headers={**auth, **case.get("headers", {})},
            json=case.get("json"),
        )
        if case["method"] == "head":  # an answer to HEAD has no body: its status says it
            if answer.status_code != 422:
                failures.append((case["method"], case["url"], case["field"], answer.status_code))
            continue
        problem = answer.json() if answer.headers.get("content-type") == PROBLEM else {}
        named = [(e.get("in"), e.get("field")) for e in problem.get("errors", [])]
        messages = " ".join(e.get("message", "") for e in problem.get("errors", []))
        if answer.status_code != 422 or (case["in"], case["field"]) not in named:
            failures.append((case["method"], case["url"], case["field"], answer.status_code))
        elif "NUL" not in messages:
            failures.append((case["method"], case["url"], case["field"], messages))
    assert failures == []


async def test_a_lone_surrogate_is_refused_and_an_escaped_emoji_is_stored(app_client):
    client, _ = app_client
    head = '{"username": "%s", "password": "' + PASSWORD + '", "display_name": "%s"}'
    lone = await client.post(
        "/api/v1/auth/register",
        content=(head % ("lone", "a\\ud800b")).encode(),
        headers={"content-type": "application/json"},
    )
    assert lone.status_code == 422, lone.text
    assert lone.headers["content-type"] == PROBLEM
    assert [(e["in"], e["field"]) for e in lone.json()["errors"]] == [("body", "display_name")]
    assert "surrogate" in lone.json()["errors"][0]["message"]

    emoji = await client.post(
        "/api/v1/auth/register",
        content=(head % ("emoji", "hi \\ud83d\\ude00")).encode(),
        headers={"content-type": "application/json"},
    )
    assert emoji.status_code == 201, emoji.text
    assert emoji.json()["display_name"] == "hi \U0001f600"


async def test_a_nul_in_a_key_of_free_form_data_names_the_object(app_client):
    client, auth = app_client
    answer = await client.post(
        "/api/v1/notifications",
        headers=auth,
        json={"recipient": "r", "channels": ["in_app"], "template": "t", "data": {"k\x00": 1}},
    )
    assert answer.status_code == 422, answer.text
    assert [(e["in"], e["field"]) for e in answer.json()["errors"]] == [("body", "data")]
