"""A 500's log line: enough to find the failure from the request id the client quotes."""

import json
import subprocess
import sys
import textwrap

# Run in a process of its own: structlog loggers cache their configuration on first use, so
# the configuration a test sets up in this process may not be the one a logger writes with.
SCRIPT = textwrap.dedent(
    """
    import asyncio

    import httpx
    from fastapi import APIRouter

    from townhall.platform.auth import TokenCodec
    from townhall.platform.clock import FrozenClock
    from townhall.platform.http import create_edge
    from townhall.platform.observability import configure_logging

    configure_logging("info", "json")
    router = APIRouter()

    @router.get("/orders/{order_id}/boom")
    async def boom(order_id: str) -> None:
        raise LookupError(f"ledger row missing for {order_id}")

    app = create_edge(
        tokens=TokenCodec("s" * 40, FrozenClock()),
        rate_limiter=None,
        routers=[router],
        readiness={},
        max_body_bytes=1024,
    )

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            answer = await client.get(
                "/api/v1/orders/o-7/boom", headers={"X-Request-ID": "quote-me-123"}
            )
        assert answer.status_code == 500, answer.text

    asyncio.run(main())
    """
)


def test_the_log_line_of_a_500_has_request_id_route_error_and_traceback():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line.get("level") == "error"]
    assert len(errors) == 1, done.stdout
    logged = errors[0]
    assert logged["request_id"] == "quote-me-123"
    assert logged["route"] == "/api/v1/orders/{order_id}/boom"
    assert logged["path"] == "/api/v1/orders/o-7/boom"
    assert logged["error_type"] == "builtins.LookupError"
    assert logged["error"] == "ledger row missing for o-7"
    traceback = logged["exception"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert "in boom" in traceback
    assert "LookupError: ledger row missing for o-7" in traceback
    # The access log line of the same request carries the same id and the status.
    access = [line for line in lines if line.get("event") == "request"]
    assert [(a["request_id"], a["status"]) for a in access] == [("quote-me-123", 500)]
