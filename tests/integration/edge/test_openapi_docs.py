"""`/docs` works for a newcomer on an installation without internet access: the OpenAPI
description declares the bearer scheme and every error a route gives as problem+json, and
Swagger UI's assets are served by the installation itself."""

from __future__ import annotations

import re

import pytest

from support.app import bearer, register_and_sign_in, running_app, settings_for

PROBLEM = "application/problem+json"


@pytest.fixture
async def app_client(sqlite_url, tmp_path):
    async with running_app(settings_for(sqlite_url, tmp_path, admins="root")) as (client, _):
        yield client


def operations(spec):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), re.sub(r"\{[^}]+\}", "p1", path), operation


async def test_the_bearer_scheme_is_declared_for_the_authorize_button(app_client):
    spec = (await app_client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert list(schemes.values()) == [
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The `access_token` from `POST /api/v1/auth/token`.",
        }
    ]


async def test_a_route_lists_401_and_the_bearer_scheme_exactly_when_it_needs_a_token(app_client):
    spec = (await app_client.get("/openapi.json")).json()
    (scheme,) = spec["components"]["securitySchemes"]
    user = bearer(await register_and_sign_in(app_client, "plain"))
    checked = 0
    for method, url, operation in operations(spec):
        anonymous = await app_client.request(method, url)
        needs_token = anonymous.status_code == 401
        assert ("401" in operation["responses"]) == needs_token, (method, url)
        assert (operation.get("security") == [{scheme: []}]) == needs_token, (method, url)
        if needs_token:
            checked += 1
            as_user = await app_client.request(method, url, headers=user)
            assert ("403" in operation["responses"]) == (as_user.status_code == 403), (method, url)
    assert checked >= 10


async def test_every_error_response_is_problem_json_with_the_real_shape(app_client):
    spec = (await app_client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    for method, url, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM], (method, url, status)
                ref = response["content"][PROBLEM]["schema"]["$ref"]
                assert ref == "#/components/schemas/Problem"
    # The documented shape is the one the edge answers with.
    answer = await app_client.post("/api/v1/auth/register", json={"username": "x"})
    assert answer.status_code == 422
    body = answer.json()
    problem, field_error = schemas["Problem"], schemas["FieldError"]
    assert set(problem["required"]) <= set(body) <= set(problem["properties"])
    for error in body["errors"]:
        assert set(field_error["required"]) <= set(error) <= set(field_error["properties"])


async def test_each_route_lists_the_errors_it_can_give(app_client):
    spec = (await app_client.get("/openapi.json")).json()
    listed = {(m, u): set(op["responses"]) for m, u, op in operations(spec)}
    assert {"409", "413", "415", "422", "429"} <= listed[("POST", "/api/v1/auth/register")]
    assert "401" not in listed[("POST", "/api/v1/auth/register")]
    assert {"401", "429"} <= listed[("GET", "/api/v1/me")]
    assert "422" not in listed[("GET", "/api/v1/me")]
    assert {"401", "403", "413", "415", "422", "429"} <= listed[("POST", "/api/v1/notifications")]
    assert {"401", "404", "422"} <= listed[("GET", "/api/v1/notifications/p1")]
    assert {"401", "422"} <= listed[("GET", "/api/v1/me/inbox")]


async def test_docs_load_swagger_ui_from_the_installation_only(app_client):
    page = await app_client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
    assert any(url.endswith(".js") for url in urls) and any(url.endswith(".css") for url in urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await app_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
