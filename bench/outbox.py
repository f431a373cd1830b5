"""The outbox on the embedded defaults: SQLite + the in-process bus, relay to handler.

    .venv/bin/python bench/outbox.py [--count 20000] [--stream-count 3000] [--writers 8] [--runs 3]

`bench/notifications.py` runs on PostgreSQL + RabbitMQ; this is the embedded path the relay
takes under `townhall serve` with no servers: rows committed to `outbox_messages` in a SQLite
file, `OutboxRelay` publishing them to `memory://`, one consumer group handling them.
- `backlog`: N rows enqueued before the relay starts; from the relay's start to the last
  message handled (a handler that only counts): the relay and the bus alone.
- `stream`: W writers enqueue M rows (`--stream-count`), 10 per transaction, while the relay
  runs and the group handles each message through the inbox (`idempotent`: one SQLite write
  per message, as a module's consumer does); from the first enqueue to the last handled.
Each phase runs `--runs` times on a fresh file; the table shows the median and the range.
Prints a table; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from townhall.platform.db import Database
from townhall.platform.messaging import Envelope, connect
from townhall.platform.migrations import migrate
from townhall.platform.outbox import OutboxRelay, enqueue, idempotent

TOPIC, GROUP = "bench", "bench"
PER_TRANSACTION = 10


def envelopes(count: int) -> list[Envelope]:
    return [
        Envelope(type="bench.Happened", key=f"k{n % 64}", payload={"n": n, "text": "x" * 200})
        for n in range(count)
    ]


async def fresh(tmp: Path) -> tuple[Database, Any]:
    database = Database(f"sqlite+aiosqlite:///{tmp / f'{uuid.uuid4().hex}.db'}")
    await migrate(database, [])
    bus = await connect(f"memory://?prefix=bench{uuid.uuid4().hex[:8]}")
    return database, bus


async def until(done: asyncio.Event, seconds: float = 600) -> None:
    await asyncio.wait_for(done.wait(), seconds)


async def backlog(tmp: Path, count: int) -> float:
    database, bus = await fresh(tmp)
    batch = envelopes(count)
    async with database.transaction() as conn:
        await enqueue(conn, TOPIC, *batch)
    handled, done = 0, asyncio.Event()

    async def count_it(envelope: Envelope) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            done.set()

    sub = await bus.subscribe(TOPIC, GROUP, count_it, prefetch=100)
    relay = OutboxRelay(database, bus)
    started = time.perf_counter()
    await relay.start()
    await until(done)
    elapsed = time.perf_counter() - started
    await sub.stop()
    await relay.stop()
    await bus.close()
    await database.dispose()
    return count / elapsed


async def stream(tmp: Path, count: int, writers: int) -> float:
    database, bus = await fresh(tmp)
    batch = envelopes(count)
    handled, done = 0, asyncio.Event()

    async def record(conn: Any, envelope: Envelope) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            done.set()

    sub = await bus.subscribe(TOPIC, GROUP, idempotent(database, GROUP, record), prefetch=100)
    relay = OutboxRelay(database, bus)
    await relay.start()
    chunks = iter(range(0, count, PER_TRANSACTION))

    async def writer() -> None:
        for start in chunks:
            async with database.transaction() as conn:
                await enqueue(conn, TOPIC, *batch[start : start + PER_TRANSACTION])

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    await until(done)
    elapsed = time.perf_counter() - started
    await sub.stop()
    await relay.stop()
    await bus.close()
    await database.dispose()
    return count / elapsed


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):>10,.0f}   {min(rates):>8,.0f} - {max(rates):<8,.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--stream-count", type=int, default=3_000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{args.count:,} messages (stream: {args.stream_count:,}), SQLite + memory://, "
        f"{args.runs} runs each, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start"
    )
    print(f"{'phase':<10}{'msg/s':>10}   {'range':<19}")
    print("-" * 42, flush=True)
    with tempfile.TemporaryDirectory(prefix="townhall-outbox-bench-") as tmp:
        rates = [await backlog(Path(tmp), args.count) for _ in range(args.runs)]
        print(f"{'backlog':<10}{summary(rates)}", flush=True)
        rates = [await stream(Path(tmp), args.stream_count, args.writers) for _ in range(args.runs)]
        print(f"{'stream':<10}{summary(rates)}", flush=True)
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    asyncio.run(main())
