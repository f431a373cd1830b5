"""The gateway's error contract: every failure is a problem+json with a stable type."""

import json

import httpx
import pytest
from fastapi import APIRouter, Depends
from limits import parse

from support.app import bearer, register_and_sign_in, running_app, settings_for
from townhall.platform.auth import Principal, TokenCodec
from townhall.platform.clock import FrozenClock
from townhall.platform.http import create_edge, current_user, rate_limit
from townhall.platform.ratelimit import RateLimiter

PROBLEM = "application/problem+json"


@pytest.fixture
async def client(sqlite_url, tmp_path):
    settings = settings_for(sqlite_url, tmp_path, max_body_bytes=2048)
    async with running_app(settings) as (client, _):
        yield client


def assert_problem(answer, status, code):
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["type"] == f"urn:townhall:problem:{code}"
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == answer.headers["x-request-id"]
    return body


async def test_no_token_and_bad_token_are_401(client):
    assert_problem(await client.get("/api/v1/me"), 401, "unauthorized")
    bad = await client.get("/api/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    body = assert_problem(bad, 401, "unauthorized")
    assert "invalid" in body["detail"]
    assert bad.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_signed_with_another_key_is_401(client):
    forged = TokenCodec("x" * 40, FrozenClock()).issue(Principal("u", "mallory", True))
    answer = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert_problem(answer, 401, "unauthorized")


async def test_unknown_path_is_404_and_wrong_method_is_405(client):
    assert_problem(await client.get("/api/v1/nowhere"), 404, "not-found")
    assert_problem(await client.delete("/api/v1/auth/token"), 405, "method-not-allowed")


async def test_a_body_over_the_limit_is_413(client):
    big = {"username": "alice", "password": "x" * 5000}
    assert_problem(await client.post("/api/v1/auth/register", json=big), 413, "payload-too-large")


async def test_a_chunked_body_over_the_limit_is_413(client):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    answer = await client.post(
        "/api/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(answer, 413, "payload-too-large")


async def test_a_non_json_body_is_415(client):
    answer = await client.post(
        "/api/v1/auth/register", content="username=a", headers={"content-type": "text/plain"}
    )
    assert_problem(answer, 415, "unsupported-media-type")


async def test_malformed_json_is_422(client):
    answer = await client.post(
        "/api/v1/auth/register",
        content=b'{"username": "alice",',
        headers={"content-type": "application/json"},
    )
    body = assert_problem(answer, 422, "validation-error")
    assert "JSON" in body["detail"]


async def test_request_id_is_taken_from_the_request_or_generated(client):
    mine = await client.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
    assert mine.headers["x-request-id"] == "trace-me-42"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 36


async def test_metrics_count_requests_by_route_template_and_status(client):
    tokens = await register_and_sign_in(client, "gina")
    await client.get("/api/v1/me", headers=bearer(tokens))
    await client.get("/api/v1/me")
    text = (await client.get("/metrics")).text
    assert 'townhall_http_requests_total{method="GET",route="/api/v1/me",status="200"} 1.0' in text
    assert 'townhall_http_requests_total{method="GET",route="/api/v1/me",status="401"} 1.0' in text
    assert "townhall_http_request_duration_seconds_bucket" in text


async def test_a_made_up_method_is_counted_as_other(client):
    for method in ("BREW", "WHEN", "BREW"):
        await client.request(method, "/api/v1/me")
    text = (await client.get("/metrics")).text
    assert "BREW" not in text and "WHEN" not in text
    other = 'townhall_http_requests_total{method="OTHER",route="/api/v1/me",status="405"} 3.0'
    assert other in text


async def test_readyz_reports_each_adapter(client):
    answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {"database": "ok", "bus": "ok", "pubsub": "ok"}


def _edge(limiter=None, readiness=None):
    tokens = TokenCodec("s" * 40, FrozenClock())
    router = APIRouter(dependencies=[rate_limit("default")])

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @router.get("/whoami")
    async def whoami(principal: Principal = Depends(current_user)) -> dict:
        return {"user": principal.username}

    app = create_edge(
        tokens=tokens,
        rate_limiter=limiter,
        routers=[router],
        readiness=readiness or {},
        max_body_bytes=1024,
        cors_origins=["https://app.example"],
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://edge",
    )
    return client, tokens


async def test_an_unhandled_exception_is_a_500_problem_without_internals():
    client, _ = _edge()
    async with client:
        answer = await client.get("/api/v1/boom")
    body = assert_problem(answer, 500, "internal-error")
    assert "hunter2" not in answer.text
    assert "Traceback" not in answer.text
    assert body["request_id"]


async def test_readyz_is_503_naming_the_adapter_that_is_down():
    async def fine() -> None:
        return None

    async def down() -> None:
        raise ConnectionRefusedError("connection refused")

    client, _ = _edge(readiness={"database": fine, "bus": down})
    async with client:
        answer = await client.get("/readyz")
    body = assert_problem(answer, 503, "unavailable")
    assert "bus" in body["detail"]
    assert body["checks"]["database"] == "ok"


async def test_rate_limit_is_429_with_retry_after_per_user_and_per_ip():
    limiter = RateLimiter({"default": parse("3/minute")}, parse("100/minute"))
    client, tokens = _edge(limiter)
    alice = {"Authorization": "Bearer " + tokens.issue(Principal("1", "alice"))}
    bob = {"Authorization": "Bearer " + tokens.issue(Principal("2", "bob"))}
    async with client:
        codes = [(await client.get("/api/v1/whoami", headers=alice)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = await client.get("/api/v1/whoami", headers=alice)
        assert_problem(limited, 429, "rate-limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Bob has his own budget; anonymous callers count per IP.
        assert (await client.get("/api/v1/whoami", headers=bob)).status_code == 200


async def test_cors_allows_only_configured_origins():
    client, _ = _edge()
    async with client:
        allowed = await client.options(
            "/api/v1/whoami",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        )
        denied = await client.options(
            "/api/v1/whoami",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in denied.headers


def test_problem_bodies_are_json_serialisable_rfc9457():
    from townhall.platform.http import problem_body

    body = problem_body(404, "not-found", "Not found", "x", "rid")
    assert json.loads(json.dumps(body)) == {
        "type": "urn:townhall:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "x",
        "request_id": "rid",
    }


async def test_malformed_json_says_it_is_the_body_and_where_by_line_and_column(client):
    answer = await client.post(
        "/api/v1/auth/register",
        content=b'{\n  "username": "alice",\n  "password": oops\n}',
        headers={"content-type": "application/json"},
    )
    body = assert_problem(answer, 422, "validation-error")
    assert body["errors"] == [
        {
            "field": "body",
            "in": "body",
            "message": "Expecting value at line 3, column 15",
            "line": 3,
            "column": 15,
        }
    ]
    assert body["detail"] == "The body is not valid JSON: Expecting value at line 3, column 15"
