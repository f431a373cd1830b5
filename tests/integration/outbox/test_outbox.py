"""The transactional outbox and the inbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.services import REDIS_URL, RUN_ID, require
from townhall.platform.db import Database
from townhall.platform.messaging import Envelope, connect
from townhall.platform.migrations import migrate
from townhall.platform.outbox import (
    EnqueueingStatement,
    OutboxRelay,
    enqueue,
    idempotent,
    outbox_messages,
    prune_inbox,
)

pytestmark = pytest.mark.timeout(90)
_runs = iter(range(10_000))


async def eventually(condition, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    await migrate(database, [])
    yield database
    await database.dispose()


async def memory_bus_with_recorder(group: str = "audit"):
    bus = await connect(f"memory://?prefix=outbox{RUN_ID}{next(_runs)}")
    received: list[Envelope] = []

    async def record(env: Envelope) -> None:
        received.append(env)

    await bus.subscribe("orders", group, record, prefetch=1000)
    return bus, received


def placed(n: int, key: str = "order-1") -> Envelope:
    return Envelope(type="orders.OrderPlaced", key=key, payload={"n": n})


async def test_a_rolled_back_transaction_publishes_nothing(db):
    bus, received = await memory_bus_with_recorder()
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await enqueue(conn, "orders", placed(1))
            raise RuntimeError("use case failed")
    relay = OutboxRelay(db, bus)
    assert await relay.publish_batch() == 0
    await asyncio.sleep(0.2)
    assert received == []
    await bus.close()


async def test_committed_envelopes_are_published_per_key_in_commit_order_and_marked_sent(db):
    bus, received = await memory_bus_with_recorder()
    for n in range(30):
        async with db.transaction() as conn:
            await enqueue(conn, "orders", placed(n, key=f"order-{n % 3}"))
    relay = OutboxRelay(db, bus, batch_size=7)
    while await relay.publish_batch():
        pass
    await eventually(lambda: len(received) == 30)
    by_key = defaultdict(list)
    for env in received:
        by_key[env.key].append(env.payload["n"])
    assert all(numbers == sorted(numbers) for numbers in by_key.values())
    async with db.connect() as conn:
        unsent = await conn.scalar(
            sa.select(sa.func.count()).where(outbox_messages.c.sent_at.is_(None))
        )
    assert unsent == 0
    await bus.close()


async def test_a_new_row_wakes_the_relay_at_once_without_polling(db):
    bus, received = await memory_bus_with_recorder()
    relay = OutboxRelay(db, bus, poll_interval=60)
    await relay.start()
    await asyncio.sleep(0.3)  # the relay is asleep now
    started = time.monotonic()
    async with db.transaction() as conn:
        await enqueue(conn, "orders", placed(1))
    await eventually(lambda: len(received) == 1, within=5)
    assert time.monotonic() - started < 2
    await relay.stop()
    await bus.close()


@pytest.mark.parametrize("form", ["enqueue", "statement"])
async def test_an_enqueue_of_a_key_waits_for_an_uncommitted_one_of_that_key(db, form):
    """PostgreSQL: positions of a key follow commit order, so the relay, reading by position,
    never publishes a key's later envelope before an earlier one that commits after it."""
    if not db.is_postgresql:
        pytest.skip("SQLite has one writer at a time")
    key = f"order-{next(_runs)}"

    async def enqueue_in_one_statement(n: int, of_key: str) -> None:
        async with db.autocommit() as conn:
            await EnqueueingStatement().execute(conn, {}, [("orders", placed(n, of_key))])

    async def enqueue_in_a_transaction(n: int, of_key: str) -> None:
        async with db.transaction() as conn:
            await enqueue(conn, "orders", placed(n, key=of_key))

    second = enqueue_in_one_statement if form == "statement" else enqueue_in_a_transaction
    async with db.transaction() as conn:
        await enqueue(conn, "orders", placed(1, key=key))
        waiting = asyncio.create_task(second(2, key))
        await asyncio.wait_for(second(3, f"{key}-other"), 5)  # another key does not wait
        await asyncio.sleep(0.5)
        assert not waiting.done()  # it waits for this transaction's commit
    await asyncio.wait_for(waiting, 5)
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox_messages.c.body)
            .where(outbox_messages.c.key == key)
            .order_by(outbox_messages.c.position)
        )
        numbers = [Envelope.from_bytes(body.encode()).payload["n"] for body in rows.scalars()]
    assert numbers == [1, 2]


async def test_commits_made_while_the_woken_relay_lingers_go_out_in_one_batch(db):
    bus, received = await memory_bus_with_recorder()
    relay = OutboxRelay(db, bus, poll_interval=60, linger=0.5)
    batches: list[int] = []
    publish_batch = relay.publish_batch

    async def recorded() -> int:
        batches.append(await publish_batch())
        return batches[-1]

    relay.publish_batch = recorded  # type: ignore[method-assign]
    await relay.start()
    await asyncio.sleep(0.3)  # the relay is asleep now
    for n in range(3):  # the first commit wakes it; the other two come while it lingers
        async with db.transaction() as conn:
            await enqueue(conn, "orders", placed(n))
    await eventually(lambda: len(received) == 3, within=5)
    await relay.stop()
    assert [env.payload["n"] for env in received] == [0, 1, 2]
    assert batches[:1] == [3]
    await bus.close()


async def test_two_relays_at_once_publish_each_envelope_once_in_key_order(db):
    bus, received = await memory_bus_with_recorder()
    relays = [OutboxRelay(db, bus, batch_size=5, poll_interval=0.1) for _ in range(2)]
    for relay in relays:
        await relay.start()

    async def writer(key: str) -> None:
        for n in range(25):
            async with db.transaction() as conn:
                await enqueue(conn, "orders", placed(n, key=key))

    await asyncio.gather(*(writer(f"order-{k}") for k in range(4)))
    await eventually(lambda: len(received) >= 100, within=30)
    await asyncio.sleep(0.3)
    for relay in relays:
        await relay.stop()
    counts = Counter(env.id for env in received)
    assert len(counts) == 100 and max(counts.values()) == 1
    by_key = defaultdict(list)
    for env in received:
        by_key[env.key].append(env.payload["n"])
    assert all(numbers == list(range(25)) for numbers in by_key.values())
    await bus.close()


async def test_sent_rows_are_pruned_after_the_retention_time(db):
    bus, received = await memory_bus_with_recorder()
    async with db.transaction() as conn:
        await enqueue(conn, "orders", placed(1), placed(2))
    relay = OutboxRelay(db, bus, retention=timedelta(hours=1))
    await relay.publish_batch()
    await eventually(lambda: len(received) == 2)  # settled: the in-process bus's rows may go
    assert await relay.prune() == 0
    async with db.transaction() as conn:
        await conn.execute(
            outbox_messages.update().values(sent_at=datetime.now(UTC) - timedelta(hours=2))
        )
    assert await relay.prune() == 2
    await bus.close()


async def test_a_relay_killed_mid_batch_loses_nothing(db, tmp_path: Path):
    require("Redis", "127.0.0.1", 6379)
    bus_url = f"{REDIS_URL}?prefix=outbox{RUN_ID}k{next(_runs)}&partitions=2&lease_ttl=1"
    bus = await connect(bus_url)
    received: set[str] = set()

    async def record(env: Envelope) -> None:
        received.add(str(env.id))

    sub = await bus.subscribe("orders", "audit", record, prefetch=500)
    ids = set()
    async with db.transaction() as conn:
        batch = [placed(n, key=f"order-{n % 5}") for n in range(200)]
        ids = {str(e.id) for e in batch}
        await enqueue(conn, "orders", *batch)
    marker = tmp_path / "published"
    script = Path(__file__).with_name("relay_process.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), db.url, bus_url, str(marker), env=env
    )
    try:
        await eventually(marker.exists, within=20)
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await asyncio.sleep(0.3)
    assert 0 < len(received) < 200, "killed mid-batch, after some publishes"
    async with db.connect() as conn:
        unsent = await conn.scalar(
            sa.select(sa.func.count()).where(outbox_messages.c.sent_at.is_(None))
        )
    assert unsent == 200, "the killed batch rolled back: nothing marked sent"
    relay = OutboxRelay(db, bus)
    while await relay.publish_batch():
        pass
    await eventually(lambda: ids <= received, within=20)
    await sub.stop()
    await bus.transport.delete_everything()
    await bus.close()


async def test_the_inbox_runs_a_handler_once_per_group_and_forgets_a_rolled_back_run(db):
    async with db.transaction() as conn:
        await conn.execute(sa.text("CREATE TABLE shipments (envelope_id VARCHAR(36))"))
    attempts = Counter()

    async def ship(conn, env: Envelope) -> None:
        attempts[env.id] += 1
        await conn.execute(sa.text("INSERT INTO shipments VALUES (:id)"), {"id": str(env.id)})
        if env.payload.get("fail") and attempts[env.id] == 1:
            raise RuntimeError("carrier down")

    shipping = idempotent(db, "shipping", ship)
    billing = idempotent(db, "billing", ship)
    first, flaky = placed(1), Envelope(type="t", key="k", payload={"fail": True})
    await shipping(first)
    await shipping(first)  # redelivered
    await billing(first)  # another group handles it too
    with pytest.raises(RuntimeError):
        await shipping(flaky)
    await shipping(flaky)  # the failed run left no inbox mark
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT envelope_id FROM shipments"))).scalars().all()
    assert Counter(rows) == {str(first.id): 2, str(flaky.id): 1}
    assert await prune_inbox(db, timedelta(days=1)) == 0
    assert await prune_inbox(db, timedelta(seconds=-1)) == 3


async def test_on_the_in_process_bus_a_row_is_settled_once_every_group_is_done_with_it(db):
    bus, received = await memory_bus_with_recorder("audit")
    release = asyncio.Event()

    async def fail_later(env: Envelope) -> None:
        await release.wait()
        raise ValueError("cannot")

    await bus.subscribe("orders", "billing", fail_later, max_attempts=1)
    async with db.transaction() as conn:
        await enqueue(conn, "orders", placed(1))
    relay = OutboxRelay(db, bus)

    async def row():
        async with db.connect() as conn:
            return (await conn.execute(sa.select(outbox_messages))).one()

    assert await relay.publish_batch() == 1
    await eventually(lambda: len(received) == 1)
    await relay.publish_batch()
    published = await row()
    assert published.sent_at is not None and published.settled_at is None, "billing holds it"

    release.set()
    deadline = time.monotonic() + 10
    while not await bus.dead_letters("orders", "billing"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await relay.publish_batch()
    assert (await row()).settled_at is not None, "handled by audit, dead-lettered by billing"
    await bus.close()


def test_an_enqueueing_statement_refuses_parameters_named_as_the_outboxs_own():
    """A module's parameter named `outbox_...` would silently replace the outbox's."""
    statement = EnqueueingStatement("mine AS (SELECT 1)")
    with pytest.raises(ValueError, match="outbox_ids"):
        statement.parameters({"outbox_ids": ["x"]}, [])
    assert "outbox_ids" in statement.parameters({"mine": 1}, [])
