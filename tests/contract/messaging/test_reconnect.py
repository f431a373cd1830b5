"""Every real broker's bus recovers by itself from a lost connection and from a broker outage,
publisher and consumers alike, under load; and its ping (what /readyz asks) says down while
the broker cannot be reached.

Cuts touch only what the test owns: RabbitMQ and Redis connections carrying the test's
connection name, a proxy of the test's own in front of RabbitMQ, private Redis and NATS servers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.brokers import (
    CuttableProxy,
    PrivateServer,
    close_rabbitmq_connections,
    kill_redis_clients,
)
from support.services import AMQP_URL, REDIS_URL, RUN_ID, require
from townhall.platform.messaging import Envelope, connect
from townhall.platform.messaging.engine import PartitionedBus

pytestmark = pytest.mark.timeout(180)

TUNING = "partitions=4&lease_ttl=1.2&backoff_base=0.05&backoff_cap=0.5&ack_wait=2&queue_expires=60"
TOTAL = 600  # messages published, one after another, while consumers run
CUT_AFTER = 150  # published before the cut
OUTAGE = 3.0  # seconds a broker stays down in an outage scenario
WITHIN = 60.0  # seconds after the cut by which every message must have been handled
GROUPS = ("billing", "audit")
_counter = itertools.count()


@dataclass
class Scenario:
    url: str
    # Cuts the connections (or takes the broker down); returns what was cut.
    cut: Callable[[], Awaitable[int]]
    # Brings a downed broker back; None when only connections were cut (the broker is up).
    heal: Callable[[], Awaitable[None]] | None = None


def _url(base: str, prefix: str) -> str:
    return f"{base}?prefix={prefix}&connection_name=townhall-test-{prefix}&{TUNING}"


@pytest.fixture(
    params=["rabbitmq-cut", "rabbitmq-outage", "redis-cut", "redis-restart", "nats-restart"]
)
async def scenario(request, tmp_path: Path) -> AsyncIterator[Scenario]:
    prefix = f"t{RUN_ID}r{next(_counter)}"
    name = f"townhall-test-{prefix}"
    kind = request.param
    if kind == "rabbitmq-cut":
        require("RabbitMQ", "127.0.0.1", 5672)
        yield Scenario(_url(AMQP_URL, prefix), lambda: close_rabbitmq_connections(name))
    elif kind == "rabbitmq-outage":
        require("RabbitMQ", "127.0.0.1", 5672)
        proxy = CuttableProxy(5672)
        await proxy.start()

        async def cut() -> int:
            count = len(proxy.writers) // 2
            await proxy.cut()
            return count

        try:
            yield Scenario(
                _url(f"amqp://guest:guest@127.0.0.1:{proxy.port}/", prefix), cut, proxy.restore
            )
        finally:
            await proxy.close()
    elif kind == "redis-cut":
        require("Redis", "127.0.0.1", 6379)
        base = REDIS_URL.split("?", 1)[0]
        yield Scenario(_url(base, prefix), lambda: kill_redis_clients(base, name))
    else:
        server = (PrivateServer.redis if kind == "redis-restart" else PrivateServer.nats)(tmp_path)
        await server.start()
        scheme = "redis" if kind == "redis-restart" else "nats"
        suffix = "/0" if scheme == "redis" else ""

        async def kill() -> int:
            await server.kill()
            return 1

        try:
            yield Scenario(
                _url(f"{scheme}://127.0.0.1:{server.port}{suffix}", prefix), kill, server.start
            )
        finally:
            await server.kill()


async def _publish_steadily(bus: PartitionedBus, published: list[int]) -> int:
    """Publish TOTAL messages in order, each until the broker holds it (as the outbox relay
    does: a failed publish is tried again); how many attempts failed."""
    failures = 0
    for n in range(TOTAL):
        while True:
            try:
                await bus.publish(
                    "load", Envelope(type="t.Happened", key=f"k{n % 16}", payload={"n": n})
                )
                break
            except Exception:
                failures += 1
                await asyncio.sleep(0.05)
        published.append(n)
        await asyncio.sleep(0.002)
    return failures


async def _wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_publisher_and_consumers_recover_by_themselves_when_the_connection_is_lost(
    scenario: Scenario,
) -> None:
    publisher = await connect(scenario.url)
    consumers = await connect(scenario.url)
    handled: dict[str, set[int]] = {group: set() for group in GROUPS}

    def recorder(group: str):
        async def handle(envelope: Envelope) -> None:
            handled[group].add(envelope.payload["n"])

        return handle

    subscriptions = [await consumers.subscribe("load", g, recorder(g), prefetch=20) for g in GROUPS]
    published: list[int] = []
    publishing = asyncio.create_task(_publish_steadily(publisher, published))
    try:
        await _wait_until(lambda: len(published) >= CUT_AFTER, 60, "publishing started")
        await _wait_until(lambda: all(handled.values()), 30, "consumers started")
        cut_at = time.monotonic()
        assert await scenario.cut() > 0, "the cut closed the test's connections"
        if scenario.heal is not None:
            # The broker is down: the bus says so, publisher and consumers alike.
            for bus in (publisher, consumers):
                with pytest.raises(Exception):  # noqa: B017 - any failure means down
                    await bus.ping()
            await asyncio.sleep(OUTAGE)
            for bus in (publisher, consumers):
                with pytest.raises(Exception):  # noqa: B017
                    await bus.ping()
            await scenario.heal()
        left = WITHIN - (time.monotonic() - cut_at)
        failures = await asyncio.wait_for(publishing, left)
        last_published_at = time.monotonic()
        everything = set(range(TOTAL))
        await _wait_until(
            lambda: all(seen == everything for seen in handled.values()),
            WITHIN - (time.monotonic() - cut_at),
            "every message handled by every group after the cut: "
            + ", ".join(f"{g} missing {len(everything - s)}" for g, s in handled.items()),
        )
        drained_at = time.monotonic()
        print(
            f"\nevery message handled {drained_at - cut_at:.1f}s after the cut,"
            f" {drained_at - last_published_at:.1f}s after the last publish"
            f" ({failures} publish attempts failed)"
        )
        await publisher.ping()
        await consumers.ping()
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        for subscription in subscriptions:
            await subscription.stop()
        for bus in (consumers, publisher):
            try:
                await bus.transport.delete_everything()  # type: ignore[attr-defined]
            finally:
                await bus.close()


async def test_consumers_of_a_redis_restarted_without_its_data_get_their_groups_back(
    tmp_path: Path,
) -> None:
    server = PrivateServer.redis(tmp_path, durable=False)
    await server.start()
    url = _url(f"redis://127.0.0.1:{server.port}/0", f"t{RUN_ID}r{next(_counter)}")
    bus = await connect(url)
    handled: set[int] = set()

    async def handle(envelope: Envelope) -> None:
        handled.add(envelope.payload["n"])

    subscription = await bus.subscribe("load", "billing", handle)
    try:
        for n in range(20):
            await bus.publish("load", Envelope(type="t.Happened", key=f"k{n}", payload={"n": n}))
        await _wait_until(lambda: handled == set(range(20)), 30, "handled before the restart")
        await server.kill()
        await server.start()  # empty: streams, groups and leases are gone
        after = range(20, 60)
        for n in after:
            while True:
                try:
                    await bus.publish(
                        "load", Envelope(type="t.Happened", key=f"k{n}", payload={"n": n})
                    )
                    break
                except Exception:
                    await asyncio.sleep(0.05)
        await _wait_until(
            lambda: set(after) <= handled,
            WITHIN,
            f"published after the restart, not handled: {len(set(after) - handled)}",
        )
    finally:
        await subscription.stop()
        await bus.close()
        await server.kill()
