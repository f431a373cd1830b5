"""The MessageBus contract, proven on every adapter against the real broker."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from townhall.platform.db import Database
from townhall.platform.messaging import Envelope, Retry, connect
from townhall.platform.migrations import migrate
from townhall.platform.outbox import OutboxRelay, enqueue, idempotent, outbox_messages

pytestmark = pytest.mark.timeout(60)


async def eventually(condition, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def envelope(n: int, key: str = "k") -> Envelope:
    return Envelope(type="test.Happened", key=key, payload={"n": n})


async def test_every_group_gets_every_message_and_members_of_a_group_compete(bus_url):
    bus = await connect(bus_url)
    seen: dict[str, list[int]] = defaultdict(list)

    def recorder(name: str):
        async def handle(env: Envelope) -> None:
            seen[name].append(env.payload["n"])

        return handle

    subs = [
        await bus.subscribe("orders", "billing", recorder("billing-1")),
        await bus.subscribe("orders", "billing", recorder("billing-2")),
        await bus.subscribe("orders", "shipping", recorder("shipping")),
    ]
    await asyncio.sleep(bus.transport.options.lease_ttl)  # the two members share partitions
    for n in range(60):
        await bus.publish("orders", envelope(n, key=f"order-{n}"))
    await eventually(lambda: len(set(seen["billing-1"] + seen["billing-2"])) == 60)
    await eventually(lambda: len(set(seen["shipping"])) == 60)
    assert seen["billing-1"] and seen["billing-2"], "both members of billing got work"
    for sub in subs:
        await sub.stop()
    await bus.close()


async def test_same_key_is_handled_in_publish_order_while_two_members_run(bus_url):
    bus = await connect(bus_url)
    handled: dict[str, list[int]] = defaultdict(list)
    running: set[str] = set()
    overlaps = []

    async def handle(env: Envelope) -> None:
        if env.key in running:
            overlaps.append(env.key)
        running.add(env.key)
        await asyncio.sleep(random.random() / 500)
        handled[env.key].append(env.payload["n"])
        running.discard(env.key)

    first = await bus.subscribe("chat", "fanout", handle, prefetch=20)
    second_bus = await connect(bus_url)
    second = await second_bus.subscribe("chat", "fanout", handle, prefetch=20)
    keys = [f"room-{i}" for i in range(8)]
    for n in range(400):
        await bus.publish("chat", envelope(n, key=keys[n % len(keys)]))
    await eventually(lambda: sum(len(v) for v in handled.values()) >= 400, within=30)
    for key in keys:
        numbers = handled[key]
        deduped = list(dict.fromkeys(numbers))
        assert deduped == sorted(deduped), f"{key} out of order"
        assert len(deduped) == 50
    assert not overlaps
    await first.stop()
    await second.stop()
    await second_bus.close()
    await bus.close()


async def test_a_failing_message_is_retried_then_dead_lettered_and_replay_handles_it(bus_url):
    bus = await connect(bus_url)
    attempts: list[int] = []
    healed = asyncio.Event()

    async def handle(env: Envelope) -> None:
        if env.payload["n"] == 1:
            attempts.append(env.attempt)
            if not healed.is_set():
                raise ValueError("boom")

    sub = await bus.subscribe("jobs", "worker", handle, max_attempts=3)
    other = await bus.subscribe("jobs", "audit", handle, max_attempts=3)
    failing = envelope(1)
    await bus.publish("jobs", failing)
    await eventually(lambda: attempts == [1, 2, 3, 1, 2, 3] or len(attempts) >= 6)
    await eventually(lambda: False if not attempts else True)

    async def letters(group: str):
        return await bus.dead_letters("jobs", group)

    deadline = time.monotonic() + 10
    while len(await letters("worker")) < 1 or len(await letters("audit")) < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    [letter] = await letters("worker")
    assert letter.envelope is not None and letter.envelope.id == failing.id
    assert letter.attempts == 3 and "ValueError: boom" in letter.error
    assert letter.failed_at.tzinfo is not None

    healed.set()
    attempts.clear()
    assert await bus.replay("jobs", "worker", ids=None) == 1
    await eventually(lambda: attempts == [1])
    await asyncio.sleep(0.3)
    assert attempts == [1], "replay went to the worker group only"
    assert await letters("worker") == []
    assert len(await letters("audit")) == 1
    await sub.stop()
    await other.stop()
    await bus.close()


async def test_retry_after_is_honoured_and_does_not_block_other_keys(bus_url):
    bus = await connect(bus_url)
    times: dict[str, list[float]] = defaultdict(list)

    async def handle(env: Envelope) -> None:
        times[env.key].append(time.monotonic())
        if env.key == "slow" and env.attempt == 1:
            raise Retry(after=0.6)

    sub = await bus.subscribe("mail", "sender", handle)
    await bus.publish("mail", envelope(0, key="slow"))
    await eventually(lambda: len(times["slow"]) == 1)
    for n in range(5):
        await bus.publish("mail", envelope(n, key=f"fast-{n}"))
    await eventually(lambda: all(times[f"fast-{n}"] for n in range(5)), within=5)
    assert len(times["slow"]) == 1, "other keys ran while 'slow' waited"
    await eventually(lambda: len(times["slow"]) == 2)
    assert times["slow"][1] - times["slow"][0] >= 0.55
    await sub.stop()
    await bus.close()


async def test_prefetch_bounds_the_messages_a_member_holds(bus_url):
    bus = await connect(bus_url)
    running = 0
    peak = 0
    done = 0

    async def handle(env: Envelope) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    sub = await bus.subscribe("feed", "fanout", handle, prefetch=5)
    for n in range(60):
        await bus.publish("feed", envelope(n, key=f"k{n}"))
    await eventually(lambda: done >= 60)
    assert 1 < peak <= 5
    await sub.stop()
    await bus.close()


async def test_bytes_that_are_not_an_envelope_go_to_dead_letters_and_work_goes_on(bus_url):
    bus = await connect(bus_url)
    handled = []

    async def handle(env: Envelope) -> None:
        handled.append(env.payload["n"])

    sub = await bus.subscribe("events", "reader", handle)
    await bus.transport.publish("events", 0, b"\xff not json")
    await bus.transport.publish("events", 0, b'{"id": "x", "type": 3}')
    await bus.publish("events", envelope(7))
    await eventually(lambda: handled == [7])
    deadline = time.monotonic() + 5
    while len(letters := await bus.dead_letters("events", "reader")) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert all(letter.envelope is None for letter in letters)
    assert any("not JSON" in letter.error for letter in letters)
    assert any("not an envelope" in letter.error or "must be" in letter.error for letter in letters)
    await sub.stop()
    await bus.close()


async def test_stop_lets_in_flight_finish_and_gives_the_rest_to_the_next_member(bus_url):
    bus = await connect(bus_url)
    handled: list[int] = []
    started = asyncio.Event()

    async def slow(env: Envelope) -> None:
        started.set()
        await asyncio.sleep(0.2)
        handled.append(env.payload["n"])

    sub = await bus.subscribe("uploads", "scanner", slow, prefetch=10)
    for n in range(20):
        await bus.publish("uploads", envelope(n))  # one key: strictly one after another
    await started.wait()
    await sub.stop()
    assert handled, "the in-flight message finished"
    first_batch = list(handled)

    async def fast(env: Envelope) -> None:
        handled.append(env.payload["n"])

    sub = await bus.subscribe("uploads", "scanner", fast)
    await eventually(lambda: set(handled) == set(range(20)))
    assert list(dict.fromkeys(handled)) == list(range(20)), "order kept across the handover"
    assert first_batch == list(range(len(first_batch)))
    await sub.stop()
    await bus.close()


async def test_a_sigkilled_member_loses_none_of_its_unacked_messages(bus_url, tmp_path: Path):
    if bus_url.startswith("memory://"):
        pytest.skip("the in-process bus lives and dies with its process")
    logfile = tmp_path / "consumer.log"
    logfile.touch()
    script = Path(__file__).with_name("consumer_process.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    bus = await connect(bus_url)
    await bus.transport.ensure_group("tasks", "runner")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), bus_url, "tasks", "runner", str(logfile), "5", env=env
    )
    try:
        await eventually(lambda: "ready" in logfile.read_text(), within=20)
        for n in range(10):
            await bus.publish("tasks", envelope(n, key=f"task-{n}"))
        await eventually(lambda: logfile.read_text().count("start") >= 3, within=10)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "done" not in logfile.read_text()

    handled: set[int] = set()

    async def handle(env: Envelope) -> None:
        handled.add(env.payload["n"])

    sub = await bus.subscribe("tasks", "runner", handle)
    await eventually(lambda: handled == set(range(10)), within=30)
    await sub.stop()
    await bus.close()


async def test_a_crash_after_the_outbox_published_and_before_any_handler_loses_nothing(
    bus_url, sqlite_url, tmp_path: Path
):
    """The worst instant for the outbox: its rows are marked published, the consumers hold
    the messages and have handled none. On a broker the messages wait there; the in-process
    bus dies with the process, so its relay must publish them again when it restarts."""
    database = Database(sqlite_url)
    await migrate(database, [])
    sent = [envelope(n, key=f"order-{n % 7}") for n in range(50)]
    async with database.transaction() as conn:
        await enqueue(conn, "orders", *sent)

    logfile = tmp_path / "process.log"
    logfile.touch()
    script = Path(__file__).with_name("outbox_process.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), bus_url, sqlite_url, "orders", "audit", str(logfile), env=env
    )

    async def unpublished() -> int:
        async with database.connect() as conn:
            query = sa.select(sa.func.count()).where(outbox_messages.c.sent_at.is_(None))
            return int(await conn.scalar(query) or 0)

    try:
        deadline = time.monotonic() + 20
        while await unpublished() or "start" not in logfile.read_text():
            assert time.monotonic() < deadline, "the process did not publish and start handling"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # The restart: same database file, a new process's bus (here: this test's), the group
    # subscribed before the relay starts, as `townhall serve` does.
    handled: list[str] = []

    async def record(conn, env: Envelope) -> None:
        handled.append(str(env.id))

    bus = await connect(bus_url)
    sub = await bus.subscribe("orders", "audit", idempotent(database, "audit", record))
    relay = OutboxRelay(database, bus, linger=0, poll_interval=0.1)
    await relay.start()
    try:
        await eventually(lambda: set(handled) == {str(e.id) for e in sent}, within=30)
        assert len(handled) == len(sent), "the inbox let each message through once"
    finally:
        await sub.stop()
        await relay.stop()
        await bus.close()
        await database.dispose()
