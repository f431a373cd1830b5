"""A request the HTTP server itself cannot parse (a control character in a header, a broken
request line) never reaches the app; the server's answer is still a problem+json 400, with
either of uvicorn's HTTP/1.1 parsers."""

import asyncio
import json

import pytest
import uvicorn

from support.process import free_port, serving, townhall_env
from townhall.platform.server import ProblemH11Protocol, http_protocol

PROBLEM = "application/problem+json"
CONTROL_CHARACTER_IN_IDEMPOTENCY_KEY = (
    b"POST /api/v1/notifications HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\x01\r\n"
    b"Content-Length: 0\r\n\r\n"
)
UNPARSEABLE = {
    "control-character-in-idempotency-key": CONTROL_CHARACTER_IN_IDEMPOTENCY_KEY,
    "nul-in-a-header": b"GET /api/v1/me HTTP/1.1\r\nHost: t\r\nX-Note: a\x00b\r\n\r\n",
    "broken-request-line": b"GET /api/v1/me HTTP/1.1 trailing\r\nHost: t\r\n\r\n",
}


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 10)  # the server closes after a 400
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def assert_problem_400(status, headers, body):
    assert status == 400
    assert headers["content-type"] == PROBLEM
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["type"] == "urn:townhall:problem:bad-request"
    assert problem["status"] == 400
    assert "not valid HTTP" in problem["detail"]
    assert problem["request_id"] == headers["x-request-id"]


async def never_called(scope, receive, send):
    raise AssertionError("an unparseable request reached the app")


CASES = [
    pytest.param(parser, request_bytes, id=f"{parser_name}-{case}")
    for parser_name, parser in [("h11", ProblemH11Protocol), ("default", http_protocol())]
    for case, request_bytes in UNPARSEABLE.items()
    # h11 lets a control character other than NUL through to the app, whose own rules apply.
    if (parser_name, case) != ("h11", "control-character-in-idempotency-key")
]


@pytest.mark.parametrize(("protocol", "request_bytes"), CASES)
async def test_each_parser_answers_an_unparseable_request_with_a_problem(protocol, request_bytes):
    port = free_port()
    config = uvicorn.Config(
        never_called, host="127.0.0.1", port=port, http=protocol, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    serving_task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert_problem_400(*await raw_exchange(port, request_bytes))
    finally:
        server.should_exit = True
        await serving_task


async def test_townhall_serve_answers_a_control_character_in_a_header_with_a_problem(
    sqlite_url, tmp_path
):
    env = townhall_env(database_url=sqlite_url, data_dir=str(tmp_path / "var"))
    with serving(env, log=tmp_path / "serve.log") as base:
        port = int(base.rsplit(":", 1)[1])
        assert_problem_400(*await raw_exchange(port, CONTROL_CHARACTER_IN_IDEMPOTENCY_KEY))
