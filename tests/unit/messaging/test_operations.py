"""Worker runner, `townhall dlq` and the admin DLQ router, on the in-process bus."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from typer.testing import CliRunner

from townhall.platform.messaging import ConsumerSpec, Envelope, connect
from townhall.platform.messaging.cli import dlq_app
from townhall.platform.messaging.http import dlq_router
from townhall.platform.messaging.worker import run_consumers, select

_ids = itertools.count()


def memory_url() -> str:
    return f"memory://?prefix=ops{next(_ids)}&backoff_base=0.01&backoff_cap=0.02"


async def with_a_dead_letter(url: str):
    bus = await connect(url)

    async def fail(env: Envelope) -> None:
        raise ValueError("nope")

    sub = await bus.subscribe("orders", "shipping", fail, max_attempts=2)
    await bus.publish("orders", Envelope(type="orders.OrderPlaced", key="o1", payload={}))
    for _ in range(200):
        if await bus.dead_letters("orders", "shipping"):
            break
        await asyncio.sleep(0.01)
    await sub.stop()
    return bus


def spec(group: str, seen: list[str]) -> ConsumerSpec:
    def factory():
        async def handle(env: Envelope) -> None:
            seen.append(group)

        return handle

    return ConsumerSpec(topic="orders", group=group, handler_factory=factory)


def test_a_worker_selects_groups_by_name_and_refuses_unknown_ones():
    specs = [spec("shipping", []), spec("billing", [])]
    assert [s.group for s in select(specs, ["billing"])] == ["billing"]
    assert len(select(specs, None)) == 2
    with pytest.raises(ValueError, match="nope"):
        select(specs, ["nope"])


async def test_the_worker_runs_its_groups_until_stopped_then_drains():
    bus = await connect(memory_url())
    seen: list[str] = []
    stop = asyncio.Event()
    worker = asyncio.create_task(run_consumers(bus, [spec("shipping", seen)], stop))
    await asyncio.sleep(0.05)
    await bus.publish("orders", Envelope(type="t", key="k", payload={}))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, 5)
    assert seen == ["shipping"]
    assert not bus.members
    await bus.close()


async def test_the_dlq_router_lists_and_replays_for_administrators_only():
    url = memory_url()
    bus = await with_a_dead_letter(url)

    def require_admin(request: Request) -> None:
        if request.headers.get("x-admin") != "yes":
            raise HTTPException(403)

    app = FastAPI()
    app.include_router(dlq_router(bus, require_admin), prefix="/api/v1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        params = {"topic": "orders", "group": "shipping"}
        assert (await client.get("/api/v1/admin/dlq", params=params)).status_code == 403
        admin = {"x-admin": "yes"}
        listed = (await client.get("/api/v1/admin/dlq", params=params, headers=admin)).json()
        [item] = listed["items"]
        assert item["attempts"] == 2 and "ValueError" in item["error"]
        body = {**params, "ids": [item["id"]]}
        replayed = await client.post("/api/v1/admin/dlq/replay", json=body, headers=admin)
        assert replayed.json() == {"replayed": 1}
    assert await bus.dead_letters("orders", "shipping") == []
    await bus.close()


def test_the_dlq_cli_lists_and_replays():
    url = memory_url()
    bus = asyncio.run(with_a_dead_letter(url))

    async def connect_bus():
        # Here the CLI runs in the process that holds the dead letters: let it read them, as
        # it reads a broker's (in another process it refuses: see the next test).
        shared = await connect(url)
        shared.transport.in_process = False  # type: ignore[attr-defined]
        return shared

    runner = CliRunner()
    listed = runner.invoke(dlq_app(connect_bus), ["list", "orders", "--group", "shipping"])
    assert listed.exit_code == 0, listed.output
    assert "attempts=2" in listed.output and "1 dead letter(s)" in listed.output
    replayed = runner.invoke(dlq_app(connect_bus), ["replay", "orders", "--group", "shipping"])
    assert replayed.exit_code == 0 and "replayed 1" in replayed.output
    assert bus is not None


def test_the_dlq_cli_refuses_the_in_process_bus_it_cannot_see_into():
    url = memory_url()

    async def connect_bus():
        return await connect(url)

    for command in (["list"], ["replay"]):
        result = CliRunner().invoke(dlq_app(connect_bus), [*command, "orders", "--group", "g"])
        assert result.exit_code == 2
        assert "GET /api/v1/admin/dlq" in result.output and "dead letter(s)" not in result.output
