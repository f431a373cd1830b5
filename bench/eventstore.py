"""Event store throughput on SQLite and PostgreSQL, beside the `eventsourcing` library's recorders.

Rows: appends/s to one stream (one event per append, expected version checked), appends/s
over 100 concurrent streams, and read-all events/s (pages of 1000 in global order), once
leaving each event's payload as stored (eventsourcing returns bytes; townhall decodes on
first access) and once decoding every payload's JSON on both sides. Both libraries run on
the same database server (SQLite: a file each in one directory) in the same run, with the
same durability: eventsourcing's SQLite connections get townhall's `synchronous=NORMAL`
(WAL on both; its default would be FULL, an fsync per commit townhall does not pay).
Every timed phase starts with a `gc.collect()` (see `settled`). Prints a table; asserts nothing.

    python bench/eventstore.py            # default run (a minute or two)
    python bench/eventstore.py --quick    # smoke run
Needs `make install-bench` (eventsourcing[postgres]) and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from townhall.platform.eventstore import NO_STREAM, NewEvent, connect

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
STREAMS = 100
WORKERS = 20  # database connections each library may use for the concurrent row
PAYLOAD = {"sku": "t-shirt", "quantity": 2, "price": "19.90", "note": "x" * 64}


def settled() -> float:
    """The start of a timed phase: first collect the garbage earlier phases left behind.

    Without it, a full (generation 2) collection owed to the objects the previous phase
    allocated lands in whichever phase comes next; on the read-all rows, which take tens of
    milliseconds, one such collection halves the figure of the library that happens to run it.
    """
    gc.collect()
    return time.perf_counter()


async def townhall_rows(url: str, single: int, concurrent: int) -> list[float]:
    store = await connect(url)
    try:
        started = settled()
        for version in range(single):
            expected = NO_STREAM if version == 0 else version
            await store.append(
                "bench-single", [NewEvent("Added", PAYLOAD)], expected_version=expected
            )
        single_rate = single / (time.perf_counter() - started)

        per_stream = concurrent // STREAMS
        gate = asyncio.Semaphore(WORKERS)

        async def stream_writer(n: int) -> None:
            for version in range(per_stream):
                expected = NO_STREAM if version == 0 else version
                async with gate:
                    await store.append(
                        f"bench-{n}", [NewEvent("Added", PAYLOAD)], expected_version=expected
                    )

        started = settled()
        await asyncio.gather(*(stream_writer(n) for n in range(STREAMS)))
        concurrent_rate = per_stream * STREAMS / (time.perf_counter() - started)

        started, position, total = settled(), 0, 0
        while page := await store.read_all(from_position=position, limit=1000):
            position, total = page[-1].position, total + len(page)
        read_rate = total / (time.perf_counter() - started)

        started, position, total = settled(), 0, 0
        while page := await store.read_all(from_position=position, limit=1000):
            for recorded in page:
                _ = recorded.data
            position, total = page[-1].position, total + len(page)
        decoded_rate = total / (time.perf_counter() - started)
        return [single_rate, concurrent_rate, read_rate, decoded_rate]
    finally:
        await store.close()


def eventsourcing_rows(recorder, single: int, concurrent: int) -> list[float]:
    from eventsourcing.persistence import StoredEvent

    # townhall's append takes a dict and encodes it; give eventsourcing the same work (its
    # application layer would encode each event before the recorder sees bytes).
    recorder.create_table()
    stream = uuid.uuid4()
    started = settled()
    for version in range(single):
        state = json.dumps(PAYLOAD).encode()
        recorder.insert_events([StoredEvent(stream, version + 1, "Added", state)])
    single_rate = single / (time.perf_counter() - started)

    per_stream = concurrent // STREAMS

    def stream_writer(_n: int) -> None:
        originator = uuid.uuid4()
        for version in range(per_stream):
            state = json.dumps(PAYLOAD).encode()
            recorder.insert_events([StoredEvent(originator, version + 1, "Added", state)])

    started = settled()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(stream_writer, range(STREAMS)))
    concurrent_rate = per_stream * STREAMS / (time.perf_counter() - started)

    started, start, total = settled(), 1, 0
    while page := recorder.select_notifications(start, 1000):
        start, total = page[-1].id + 1, total + len(page)
    read_rate = total / (time.perf_counter() - started)

    started, start, total = settled(), 1, 0
    while page := recorder.select_notifications(start, 1000):
        for notification in page:
            _ = json.loads(notification.state)
        start, total = page[-1].id + 1, total + len(page)
    decoded_rate = total / (time.perf_counter() - started)
    return [single_rate, concurrent_rate, read_rate, decoded_rate]


def sqlite_recorder(path: Path):
    from eventsourcing.sqlite import (
        SQLiteApplicationRecorder,
        SQLiteConnectionPool,
        SQLiteDatastore,
    )

    # townhall.platform.db runs SQLite with synchronous=NORMAL; give eventsourcing the same.
    create = SQLiteConnectionPool._create_connection

    def create_normal(pool: SQLiteConnectionPool):
        connection = create(pool)
        connection._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        return connection

    SQLiteConnectionPool._create_connection = create_normal

    datastore = SQLiteDatastore(str(path), pool_size=WORKERS, max_overflow=0, lock_timeout=30)
    return SQLiteApplicationRecorder(datastore)


def postgres_recorder(name: str):
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    datastore = PostgresDatastore(
        name, "127.0.0.1", 5432, "postgres", "", pool_size=WORKERS, max_overflow=0
    )
    return PostgresApplicationRecorder(datastore)


async def main(quick: bool) -> None:
    single, concurrent = (200, 1000) if quick else (2000, 10_000)
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite", "townhall"] = await townhall_rows(
            f"sqlite+aiosqlite:///{tmp}/townhall.db", single, concurrent
        )
        results["SQLite", "eventsourcing"] = await asyncio.to_thread(
            eventsourcing_rows, sqlite_recorder(Path(tmp) / "eventsourcing.db"), single, concurrent
        )
    name = f"townhall_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        results["PostgreSQL", "townhall"] = await townhall_rows(
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", single, concurrent
        )
        results["PostgreSQL", "eventsourcing"] = await asyncio.to_thread(
            eventsourcing_rows, postgres_recorder(name), single, concurrent
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    rows = [
        f"appends/s, one stream ({single} appends)",
        f"appends/s, {STREAMS} concurrent streams ({concurrent} appends)",
        "read-all events/s (pages of 1000)",
        "read-all events/s, payload JSON decoded",
    ]
    print(f"{'measure':<52} {'database':<11} {'townhall':>10} {'eventsourcing':>14} {'ratio':>6}")
    for index, row in enumerate(rows):
        for database in ("SQLite", "PostgreSQL"):
            ours = results[database, "townhall"][index]
            theirs = results[database, "eventsourcing"][index]
            print(f"{row:<52} {database:<11} {ours:>10,.0f} {theirs:>14,.0f} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    asyncio.run(main(parser.parse_args().quick))
