"""Benchmark: the order saga end to end (order placed -> terminal) on PostgreSQL + RabbitMQ, in
each saga mode, beside a Celery canvas of the same three steps.

    .venv/bin/python bench/orders.py [--modes orchestration,choreography] [--count 1000]
        [--seconds 10] [--skip-celery] [--profile]

Townhall runs as a deployment does, one process per role, each `townhall` command a real
process: the HTTP edge (`serve --modules identity,inventory,payments,shipping,orders
--no-consumers --no-relay`), `townhall relay`, one `townhall worker` with the orders module's
consumer groups (the orchestrator in orchestration mode) and one with the participants'
(inventory, payments with its simulator, shipping with its carrier simulator). The groups are
read from the composition root per mode, so a mode that reacts on other topics runs its own.
Orders are POSTed to `/api/v1/orders` by one buyer (one SKU out of 16, one item, the
simulator's succeeding card) over keep-alive HTTP connections. An order is terminal when its
`OrderConfirmed` / `OrderFailed` / `OrderCancelled` is in the event store; its latency ends at
that event's `recorded_at`.

The peer is what a Python team would reach for: `chain(reserve_stock, capture_payment,
create_shipment)` with `link_error` compensations (`bench/celery_saga_tasks.py`), each step
one PostgreSQL transaction writing its row, broker RabbitMQ, one `celery worker` process
(prefork, 4 children by default). Its client inserts the PENDING order row (what a view does)
and calls `apply_async`; an order is terminal when the last step (or the failure callback)
sets its `finished_at` (`clock_timestamp()`).

Per system:
1. peak: N orders submitted as fast as the client can (32 connections / 8 threads): completed
   sagas/s = N / (last terminal - first submission); CPU seconds per saga over that window:
   the benchmark's processes and the client (exact), PostgreSQL and RabbitMQ (their server
   processes, shared with whatever else runs), the whole machine.
2. latency: orders at half the measured peak, open loop (order i is due at t0 + i/rate,
   whatever the earlier ones do), for `--seconds`: p50/p99 from the due time to terminal.
   Townhall's latency hop by hop, from `outbox_messages`: per message type, the time in the
   outbox until the relay published it, then until the order's next message was written.
3. check: 20 orders with a declined card end FAILED with their stock released, and the
   confirmed orders hold exactly their stock.
Then PostgreSQL's work per order (commits, rows written: the run database's statistics,
read once its clients are gone) and the projection rebuild rate (events/s) of each
registered projection, in process.
`--relay-linger 0` runs the relay without its 10 ms linger (`TOWNHALL_RELAY_LINGER`), to
measure what the linger costs each hop. `--profile` samples every Townhall process with
py-spy (`bench/spy.py`) during the peak phase and prints, per process, where its CPU
goes. Every process, the databases and the RabbitMQ queues and exchanges of the run are
removed at the end, also on errors. Prints tables; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from notifications import (  # noqa: E402
    AMQP_URL,
    SERVICES,
    Http,
    Processes,
    Row,
    amqp_answers,
    cleanup,
    client_without_pauses,
    cpu_by_command,
    free_port,
    machine_cpu_seconds,
    outbox_topics,
    percentile,
    print_table,
    run_sql,
    terminated_on_signal,
    townhall_call,
    townhall_env,
    townhall_rabbit_names,
)
from spy import Spies  # noqa: E402  (bench/ is on the path)

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
ADMIN, BUYER, PASSWORD = "benchadmin", "benchbuyer", "benchmark password"
GOOD_CARD, DECLINED_CARD = "4242424242424242", "4000000000000002"
SKUS = [f"bench-{n:02d}" for n in range(16)]
STOCK = 1_000_000
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Main Street",
    "city": "Ghent",
    "postal_code": "9000",
    "country": "BE",
}
EDGE_MODULES = "identity,inventory,payments,shipping,orders"
PARTICIPANTS = ("inventory", "payments", "shipping")
TERMINAL = ("OrderConfirmed", "OrderFailed", "OrderCancelled")
CHECK_COUNT = 20


# --- what every system reports --------------------------------------------------------------


@dataclass
class Figures:
    system: str
    peak: float = float("nan")  # sagas/s
    peak_note: str = ""
    rate: float = float("nan")
    p50: float = float("nan")
    p99: float = float("nan")
    latency_note: str = ""
    cpu_ms: float = float("nan")  # the benchmark's processes + the client, per saga
    services_ms: dict[str, float] = field(default_factory=dict)
    machine_ms: float = float("nan")
    cpu_note: str = ""
    by_process: dict[str, float] = field(default_factory=dict)  # ms per saga
    check: str = ""
    database_work: str = ""
    hops: list[str] = field(default_factory=list)
    rebuild: list[tuple[str, int, float]] = field(default_factory=list)
    skipped: str = ""


def group_cpu_seconds(pgids: Iterable[int]) -> float:
    """User + system CPU seconds of every live process in these process groups (a Celery
    worker's prefork children included, which the parent's own counters do not show)."""
    wanted, total = set(pgids), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in wanted:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """CPU spent from creation to `close()`: the run's processes (by process group), this
    client, the services' server processes, the whole machine."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.pgids = {name: proc.pid for name, proc in procs.running.items()}
        self.each = {name: group_cpu_seconds([pgid]) for name, pgid in self.pgids.items()}
        self.start = (
            group_cpu_seconds(self.pgids.values()),
            own_cpu_seconds(),
            cpu_by_command(SERVICES),
            machine_cpu_seconds(),
        )

    def per_saga(self, figures: Figures, sagas: int) -> None:
        processes, client, services, machine = self.start
        ms = 1000 / sagas
        ours = group_cpu_seconds(self.pgids.values()) - processes
        figures.by_process = {
            name: (group_cpu_seconds([pgid]) - self.each[name]) * ms
            for name, pgid in self.pgids.items()
        }
        mine = own_cpu_seconds() - client
        figures.cpu_ms = (ours + mine) * ms
        figures.services_ms = {
            name: (seconds - services[name]) * ms
            for name, seconds in cpu_by_command(SERVICES).items()
        }
        figures.machine_ms = (machine_cpu_seconds() - machine) * ms
        figures.cpu_note = f"client {mine * ms:.1f} ms of it"


# --- terminal orders, read from PostgreSQL ---------------------------------------------------


class Terminals:
    """Polls the run's database for orders that reached their end: id -> (status, epoch
    seconds of the end as recorded by the writer). Rows are read again from a margin below the
    highest sequence seen, so one that committed late behind a higher one is not missed."""

    def __init__(self, dsn: str, query: str) -> None:
        self.dsn, self.query = dsn, query
        self.ended: dict[str, tuple[str, float]] = {}
        self._seen = 0
        self.polls = 0  # each one a transaction of the run's database, not the system's

    async def poll(self, conn: Any) -> None:
        self.polls += 1
        for row in await conn.fetch(self.query, max(0, self._seen - 5000)):
            self._seen = max(self._seen, row["seq"])
            self.ended.setdefault(row["id"], (row["status"], row["at"].timestamp()))

    async def wait_for(self, ids: Iterable[str], stall: float = 60.0) -> None:
        """Until every id ended; fails if none of the missing ends for `stall` seconds."""
        import asyncpg

        missing = set(ids)
        progress = time.monotonic()
        conn = await asyncpg.connect(self.dsn)
        try:
            while True:
                await self.poll(conn)
                before = len(missing)
                missing -= self.ended.keys()
                if not missing:
                    return
                if len(missing) < before:
                    progress = time.monotonic()
                elif time.monotonic() - progress > stall:
                    raise SystemExit(f"{len(missing)} orders did not end within {stall:.0f} s")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()


TOWNHALL_TERMINALS = (
    "SELECT position AS seq, substr(stream_id, 7) AS id, type AS status, recorded_at AS at"
    " FROM eventstore_events WHERE position > $1 AND stream_id LIKE 'order-%' AND type IN ("
    + ", ".join(f"'{name}'" for name in TERMINAL)
    + ") ORDER BY position"
)
CELERY_TERMINALS = (
    "SELECT finish_seq AS seq, id::text AS id, status, finished_at AS at"
    " FROM orders WHERE finish_seq > $1 ORDER BY finish_seq"
)


def database_work(database: str, orders: int, polls: int) -> str:
    """Transactions and rows written per order over the whole run (set-up, warm-up and check
    included), from PostgreSQL's statistics of the run's own database once its clients have
    gone (a backend flushes its counters on exit); the benchmark's polls taken out."""
    import asyncpg

    async def read() -> Any:
        conn = await asyncpg.connect(f"{POSTGRES}/postgres")
        try:
            await asyncio.sleep(1.0)
            return await conn.fetchrow(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted"
                " FROM pg_stat_database WHERE datname = $1",
                database,
            )
        finally:
            await conn.close()

    row = asyncio.run(read())
    if row is None or not orders:
        return ""
    commits = (row["xact_commit"] - polls) / orders
    return (
        f"{commits:.1f} commits, {row['xact_rollback'] / orders:.2f} rollbacks, rows inserted "
        f"{row['tup_inserted'] / orders:.1f} / updated {row['tup_updated'] / orders:.1f} / "
        f"deleted {row['tup_deleted'] / orders:.1f} per order"
    )


async def hops_of(dsn: str, due: dict[str, float], terminals: Terminals) -> list[str]:
    """Where an order's time goes, hop by hop, from the outbox: per message type (in the order
    the saga writes them), the median time a message waits in the outbox until the relay has
    published it (`sent_at - created_at`) and then until the order's next message is written
    (the broker, the consumer and its transaction); first the edge (due -> first message) and
    last the end (last message -> terminal event)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT key, CAST(body AS json)->>'type' AS type, created_at, sent_at"
            " FROM outbox_messages WHERE key = ANY($1::text[])",
            list(due),
        )
    finally:
        await conn.close()
    by_order: dict[str, list[Any]] = {}
    for row in rows:
        by_order.setdefault(row["key"], []).append(row)
    waits: dict[str, list[float]] = {}
    onward: dict[str, list[float]] = {}
    offsets: dict[str, list[float]] = {}
    edge, tail = [], []
    for order_id, messages in by_order.items():
        messages.sort(key=lambda row: row["created_at"])
        first = messages[0]["created_at"].timestamp()
        edge.append((first - due[order_id]) * 1000)
        end = terminals.ended[order_id][1]
        before_end = [m for m in messages if m["created_at"].timestamp() <= end]
        tail.append((end - before_end[-1]["created_at"].timestamp()) * 1000)
        for index, message in enumerate(messages):
            kind = message["type"]
            created = message["created_at"].timestamp()
            offsets.setdefault(kind, []).append(created - first)
            if message["sent_at"] is None:
                continue
            sent = message["sent_at"].timestamp()
            waits.setdefault(kind, []).append((sent - created) * 1000)
            after = [m["created_at"].timestamp() for m in messages[index + 1 :]]
            caused = [at for at in after if at >= sent]
            if caused and created < end:
                onward.setdefault(kind, []).append((min(caused) - sent) * 1000)
    if not by_order:
        return []
    lines = [f"POST due -> first message written: p50 {percentile(edge, 50):.1f} ms"]
    for kind in sorted(offsets, key=lambda k: percentile(offsets[k], 50)):
        wait = percentile(waits.get(kind, []), 50)
        line = f"{kind}: in the outbox {wait:.1f} ms"
        if onward.get(kind):
            line += f", then {percentile(onward[kind], 50):.1f} ms to the next message"
        lines.append(line)
    lines.append(f"last message before the end -> terminal event: p50 "
                 f"{percentile(tail, 50):.1f} ms")  # fmt: skip
    return lines


def rates_of(submitted: dict[str, float], terminals: Terminals) -> tuple[float, float]:
    """Completed sagas/s from the first submission to the last end, and that last end."""
    last = max(terminals.ended[i][1] for i in submitted)
    return len(submitted) / (last - min(submitted.values())), last


def latencies_ms(due: dict[str, float], terminals: Terminals) -> list[float]:
    return [(terminals.ended[i][1] - at) * 1000 for i, at in due.items()]


def statuses(ids: Iterable[str], terminals: Terminals) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in ids:
        status = terminals.ended[i][0]
        counts[status] = counts.get(status, 0) + 1
    return counts


# --- Townhall ----------------------------------------------------------------------------------


class Buyer:
    """POSTs orders over keep-alive connections: order id -> epoch seconds of its submission
    (or of its due time, when paced)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.errors = 0
        self.sequence = 0

    def request(self, card: str) -> tuple[bytes, bytes]:
        self.sequence += 1
        body = json.dumps(
            {
                "items": [{"sku": SKUS[self.sequence % len(SKUS)], "quantity": 1}],
                "shipping_address": ADDRESS,
                "payment": {"card": card},
            }
        ).encode()
        head = (
            f"POST /api/v1/orders HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {uuid.uuid4().hex}\r\nContent-Length: "
        ).encode()
        return head, body

    async def place(self, http: Http, card: str) -> str | None:
        status, answer = await http.post(*self.request(card))
        if status != 202:
            self.errors += 1
            if self.errors <= 3:
                print(f"  POST /orders answered {status}: {answer[:300]!r}", file=sys.stderr)
            return None
        return str(json.loads(answer)["id"])

    async def as_fast_as_possible(
        self, count: int, connections: int, card: str = GOOD_CARD
    ) -> dict[str, float]:
        placed: dict[str, float] = {}
        remaining = iter(range(count))

        async def connection() -> None:
            http = await Http.open(self.port)
            try:
                for _ in remaining:
                    sent = time.time()
                    order_id = await self.place(http, card)
                    if order_id is not None:
                        placed[order_id] = sent
            finally:
                http.close()

        await asyncio.gather(*(connection() for _ in range(connections)))
        return placed

    async def paced(
        self, rate: float, seconds: float, connections: int = 64
    ) -> tuple[dict[str, float], float]:
        """Open loop: order i is due at t0 + i/rate; its latency counts from then."""
        pool = asyncio.Queue[Http]()
        for _ in range(connections):
            pool.put_nowait(await Http.open(self.port))
        due_at: dict[str, float] = {}

        async def one(due: float) -> None:
            http = await pool.get()
            try:
                order_id = await self.place(http, GOOD_CARD)
            finally:
                pool.put_nowait(http)
            if order_id is not None:
                due_at[order_id] = due

        total = int(rate * seconds)
        tasks = []
        started, epoch = time.perf_counter(), time.time()
        for index in range(total):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(epoch + index / rate)))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - started)
        while not pool.empty():
            pool.get_nowait().close()
        return due_at, achieved


def saga_mode_supported(mode: str) -> str | None:
    """None if this code base has `mode`, else why not."""
    from pydantic import ValidationError

    from townhall.config import Settings

    if "saga_mode" not in Settings.model_fields:
        return "Settings has no saga_mode (TOWNHALL_SAGA_MODE) yet: orchestration only"
    try:
        Settings(saga_mode=mode)
    except ValidationError as exc:
        return f"TOWNHALL_SAGA_MODE={mode} is refused: {exc.errors()[0]['msg']}"
    return None


def settings_of(env: dict[str, str]) -> Any:
    from townhall.config import Settings

    known = Settings.model_fields
    values = {
        name.removeprefix("TOWNHALL_").lower(): value
        for name, value in env.items()
        if name.startswith("TOWNHALL_") and name.removeprefix("TOWNHALL_").lower() in known
    }
    return Settings(**values)


async def composition(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The consumer groups and the projections this configuration registers."""
    from townhall.bootstrap import assemble

    runtime = await assemble(settings_of(env), run_migrations=False)
    try:
        groups = sorted({spec.group for spec in runtime.consumers})
        return groups, list(runtime.platform.projections.names)
    finally:
        await runtime.stop()


async def rebuild_rates(env: dict[str, str], names: list[str]) -> list[tuple[str, int, float]]:
    from townhall.bootstrap import assemble

    runtime = await assemble(settings_of(env), run_migrations=False)
    rates = []
    try:
        for name in names:
            started = time.perf_counter()
            replayed = await runtime.platform.projections.rebuild(name)
            rates.append((name, replayed, replayed / (time.perf_counter() - started)))
    finally:
        await runtime.stop()
    return rates


def townhall_setup(env: dict[str, str], port: int) -> tuple[str, str]:
    """Admin and buyer tokens; the 16 products, each with plenty of stock."""
    import httpx

    base = f"http://127.0.0.1:{port}/api/v1"
    tokens = []
    for name in (ADMIN, BUYER):
        httpx.post(
            f"{base}/auth/register", json={"username": name, "password": PASSWORD}
        ).raise_for_status()
        answer = httpx.post(f"{base}/auth/token", json={"username": name, "password": PASSWORD})
        answer.raise_for_status()
        tokens.append(answer.json()["access_token"])
    for sku in SKUS:
        httpx.post(
            f"{base}/products",
            headers={"Authorization": f"Bearer {tokens[0]}"},
            json={"sku": sku, "name": sku, "price_cents": 1500, "currency": "EUR", "stock": STOCK},
        ).raise_for_status()
    return tokens[0], tokens[1]


def stock_left(port: int, token: str) -> int:
    import httpx

    answer = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/products?limit=100",
        headers={"Authorization": f"Bearer {token}"},
    )
    answer.raise_for_status()
    return sum(item["stock"] for item in answer.json()["items"] if item["sku"] in SKUS)


def run_townhall(
    mode: str, args: Any, procs: Processes, run_id: str, made: dict[str, list[str]]
) -> Figures:
    figures = Figures(f"Townhall {mode}")
    run_id += f"{mode[:5]}{len(made['databases'])}"  # a run tried once more gets new names
    database, prefix = f"townhall_obench_{run_id}", f"obench{run_id}"
    run_sql(f'CREATE DATABASE "{database}"')
    made["databases"].append(database)
    made["prefixes"].append(prefix)
    port = free_port()
    env = townhall_env(
        f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        f"{AMQP_URL}?prefix={prefix}&queue_expires=120",
        free_port(),  # no notification is sent; this keeps the built-in SMTP sink off
        port,
    )
    env["TOWNHALL_SAGA_MODE"] = mode
    townhall_call(["migrate"], env)
    groups, projections = asyncio.run(composition(env))
    made[f"groups:{prefix}"] = groups
    saga_groups = [g for g in groups if g.split(".")[0] == "orders"]
    participant_groups = [g for g in groups if g.split(".")[0] in PARTICIPANTS]
    townhall = [sys.executable, "-m", "townhall"]
    procs.start("edge", [*townhall, "serve", "--modules", EDGE_MODULES, "--no-consumers",
                         "--no-relay"], env)  # fmt: skip
    relay_env = dict(env)
    if args.relay_linger is not None:
        relay_env["TOWNHALL_RELAY_LINGER"] = str(args.relay_linger)
        figures.system += f", relay linger {args.relay_linger:g} s"
    procs.start("relay", [*townhall, "relay"], relay_env)
    # The read models run once, in the orders worker (a projection runs where it is named).
    procs.start("orders", [*townhall, "worker", *saga_groups, *projections], env)
    procs.start("participants", [*townhall, "worker", *participant_groups], env)
    procs.wait_for_log("edge", "Townhall is up")
    for name in ("orders", "participants"):
        procs.wait_for_log(name, "worker running")
    admin, token = townhall_setup(env, port)
    buyer = Buyer(port, token)
    terminals = Terminals(f"{POSTGRES}/{database}", TOWNHALL_TERMINALS)
    figures.latency_note = f"orders worker: {', '.join(saga_groups)}"

    async def phases() -> None:
        warm = await buyer.as_fast_as_possible(100, 8)
        await terminals.wait_for(warm)
        window = CpuWindow(procs)
        spies = Spies(procs, mode) if args.profile else None
        with client_without_pauses():
            placed = await buyer.as_fast_as_possible(args.count, args.connections)
            await terminals.wait_for(placed)
        window.per_saga(figures, len(placed))
        if spies is not None:
            spies.stop()
            spies.report(f"Townhall {mode}, peak phase ({len(placed)} sagas)")
        figures.peak, _ = rates_of(placed, terminals)
        counts = statuses(placed, terminals)
        figures.peak_note = f"{len(placed)} orders, {buyer.errors} errors, {counts}"
        figures.rate = figures.peak / 2
        with client_without_pauses():
            due, achieved = await buyer.paced(figures.rate, args.seconds)
            await terminals.wait_for(due)
        latencies = latencies_ms(due, terminals)
        figures.p50, figures.p99 = percentile(latencies, 50), percentile(latencies, 99)
        figures.latency_note = (
            f"achieved {achieved:.0f}/s, {statuses(due, terminals)}; " + figures.latency_note
        )
        figures.hops = await hops_of(f"{POSTGRES}/{database}", due, terminals)
        declined = await buyer.as_fast_as_possible(CHECK_COUNT, 4, DECLINED_CARD)
        await terminals.wait_for(declined)
        confirmed = sum(1 for status, _ in terminals.ended.values() if status == "OrderConfirmed")
        left = await asyncio.to_thread(stock_left, port, admin)
        figures.check = (
            f"declined card: {statuses(declined, terminals)}; stock taken "
            f"{len(SKUS) * STOCK - left} for {confirmed} confirmed"
        )

    asyncio.run(phases())
    for name in ("edge", "relay", "orders", "participants"):
        procs.kill(name, signal.SIGTERM)
    figures.database_work = database_work(database, len(terminals.ended), terminals.polls)
    registered = [name for name in projections if name.startswith("orders.")] or projections
    if registered:
        try:
            figures.rebuild = asyncio.run(rebuild_rates(env, registered))
        except Exception as exc:  # the saga's figures stand; say why this one is missing
            figures.rebuild = [(f"{', '.join(registered)} failed: {exc!r}"[:200], 0, 0.0)]
    return figures


# --- Celery ------------------------------------------------------------------------------------


def run_celery(args: Any, procs: Processes, run_id: str, made: dict[str, list[str]]) -> Figures:
    import psycopg

    figures = Figures("Celery canvas")
    run_id += f"celery{len(made['databases'])}"  # a run tried once more gets new names
    database, queue = f"townhall_obench_{run_id}", f"townhall_obench_{run_id}"
    run_sql(f'CREATE DATABASE "{database}"')
    made["databases"].append(database)
    made["celery_queues"].append(queue)
    dsn = f"{POSTGRES}/{database}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")},
        "BENCH_CELERY_BROKER": AMQP_URL,
        "BENCH_CELERY_QUEUE": queue,
        "BENCH_CELERY_DATABASE": dsn,
        "PYTHONPATH": str(HERE),
    }
    os.environ.update({k: env[k] for k in ("BENCH_CELERY_BROKER", "BENCH_CELERY_QUEUE")})
    import celery_saga_tasks  # configured from the environment on import: after the above

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(celery_saga_tasks.SCHEMA)
        for sku in SKUS:
            conn.execute("INSERT INTO stock VALUES (%s, %s, 0)", (sku, STOCK))
    procs.start(
        "celery",
        [sys.executable, "-m", "celery", "-A", "celery_saga_tasks", "worker",
         f"--pool={args.celery_pool}", f"--concurrency={args.celery_concurrency}",
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel=WARNING", "-n", f"saga-{queue}@%h"],
        env,
        cwd=HERE,
    )  # fmt: skip
    wait_for_consumer(queue, procs)
    terminals = Terminals(dsn, CELERY_TERMINALS)
    sequence = iter(range(10**9))

    def place(conn: Any, card: str) -> str:
        order_id = str(uuid.uuid4())
        sku = SKUS[next(sequence) % len(SKUS)]
        conn.execute(
            "INSERT INTO orders (id, sku, quantity, amount_cents, card, status, placed_at)"
            " VALUES (%s, %s, 1, 1500, %s, 'PENDING', clock_timestamp())",
            (order_id, sku, card),
        )
        celery_saga_tasks.canvas(order_id).apply_async()
        return order_id

    threads = args.celery_client_threads
    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(threads)]

    def as_fast_as_possible(count: int, card: str = GOOD_CARD) -> dict[str, float]:
        placed: dict[str, float] = {}
        remaining = iter(range(count))

        def client(conn: Any) -> None:
            for _ in remaining:
                sent = time.time()
                placed[place(conn, card)] = sent

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(client, connections))
        return placed

    def paced(rate: float, seconds: float) -> tuple[dict[str, float], float]:
        due_at: dict[str, float] = {}
        total = int(rate * seconds)
        started, epoch = time.perf_counter(), time.time()
        for index in range(total):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            due_at[place(connections[0], GOOD_CARD)] = epoch + index / rate
        return due_at, total / (time.perf_counter() - started)

    try:
        warm = as_fast_as_possible(100)
        asyncio.run(terminals.wait_for(warm))
        window = CpuWindow(procs)
        with client_without_pauses():
            placed = as_fast_as_possible(args.count)
            asyncio.run(terminals.wait_for(placed))
        window.per_saga(figures, len(placed))
        figures.peak, _ = rates_of(placed, terminals)
        figures.peak_note = f"{len(placed)} orders, {statuses(placed, terminals)}"
        figures.rate = figures.peak / 2
        with client_without_pauses():
            due, achieved = paced(figures.rate, args.seconds)
            asyncio.run(terminals.wait_for(due))
        latencies = latencies_ms(due, terminals)
        figures.p50, figures.p99 = percentile(latencies, 50), percentile(latencies, 99)
        figures.latency_note = (
            f"achieved {achieved:.0f}/s, {statuses(due, terminals)}; "
            f"{args.celery_pool} x{args.celery_concurrency}"
        )
        declined = as_fast_as_possible(CHECK_COUNT, DECLINED_CARD)
        asyncio.run(terminals.wait_for(declined))
        with psycopg.connect(dsn) as conn:
            reserved, held = conn.execute(
                "SELECT (SELECT sum(reserved) FROM stock),"
                " (SELECT count(*) FROM reservations WHERE NOT released)"
            ).fetchone()
            confirmed = conn.execute(
                "SELECT count(*) FROM orders WHERE status = 'CONFIRMED'"
            ).fetchone()[0]
        figures.check = (
            f"declined card: {statuses(declined, terminals)}; stock taken {reserved} "
            f"({held} reservations held) for {confirmed} confirmed"
        )
    finally:
        for conn in connections:
            conn.close()
        celery_saga_tasks.app.close()
        procs.kill("celery", signal.SIGTERM)
    figures.database_work = database_work(database, len(terminals.ended), terminals.polls)
    return figures


def wait_for_consumer(queue: str, procs: Processes, timeout: float = 60.0) -> None:
    import aio_pika

    async def consumers() -> int:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.consumer_count or 0)
        except Exception:
            return 0
        finally:
            await connection.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(consumers()) >= 1:
            return
        if procs.running["celery"].poll() is not None:
            raise SystemExit(f"celery exited:\n{procs.log_of('celery')[-3000:]}")
        time.sleep(0.3)
    raise SystemExit(f"the Celery worker did not consume {queue} within {timeout:.0f} s")


# --- clean-up ----------------------------------------------------------------------------------


def remove_rabbit(made: dict[str, list[str]]) -> None:
    """Every queue and exchange of the run: by prefix where rabbitmqctl may list them, else by
    the names the bus adapter gives each topic and group (from the outbox's topics). A busy
    shared broker can take many seconds to answer: waited for, and tried three times."""
    prefixes = (*made["prefixes"], *made["celery_queues"])
    if not prefixes:
        return
    for attempt in range(1, 4):
        queues, exchanges = rabbit_names("list_queues"), rabbit_names("list_exchanges")
        if queues is None or exchanges is None:
            queues, exchanges = list(made["celery_queues"]), list(made["celery_queues"])
            for database, prefix in zip(made["databases"], made["prefixes"], strict=False):
                topics = outbox_topics(database)
                groups = made.get(f"groups:{prefix}", [])
                topic_groups = [(topic, group) for topic in topics for group in groups]
                more_queues, more_exchanges = townhall_rabbit_names(prefix, topics, topic_groups)
                queues += more_queues
                exchanges += more_exchanges
        queues = [name for name in queues if name.startswith(prefixes)]
        exchanges = [name for name in exchanges if name.startswith(prefixes)]
        try:
            broker_up(120.0)
            asyncio.run(delete_names(queues, exchanges))
            return
        except (Exception, SystemExit) as exc:
            print(f"deleting the queues: {exc!r}, attempt {attempt} of 3", file=sys.stderr)
            time.sleep(5)


async def delete_names(queues: list[str], exchanges: list[str]) -> None:
    """Delete queues and exchanges by name (an absent one is not an error), with a patient
    connection."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL, timeout=30)
    try:
        channel = await connection.channel()
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                try:
                    await getattr(channel, f"{kind}_delete")(name)
                except aio_pika.exceptions.ChannelClosed:  # gone already: the channel closed
                    channel = await connection.channel()
    finally:
        await connection.close()


def rabbit_names(command: str) -> list[str] | None:
    """Names from `rabbitmqctl` (None where this user may not run it)."""
    try:
        done = subprocess.run(
            ["rabbitmqctl", command, "-q", "name"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


# --- main --------------------------------------------------------------------------------------


def table(all_figures: list[Figures], args: Any) -> None:
    rows: list[Row] = []
    for f in all_figures:
        if f.skipped:
            rows.append(Row(f.system, "skipped", "", f.skipped))
            continue
        services = " / ".join(f"{f.services_ms.get(name, 0):.1f}" for name in SERVICES)
        rows += [
            Row(f.system, "completed sagas/s at peak", f"{f.peak:,.0f}/s", f.peak_note),
            Row(f.system, f"p50 / p99 placed -> terminal at {f.rate:,.0f}/s",
                f"{f.p50:.1f} / {f.p99:.1f} ms", f.latency_note),
            Row(f.system, "CPU per saga, processes + client", f"{f.cpu_ms:.1f} ms",
                f"{f.cpu_note}; " + ", ".join(f"{k} {v:.1f}" for k, v in f.by_process.items())),
            Row(f.system, "CPU per saga, PostgreSQL / RabbitMQ", f"{services} ms",
                "their server processes, shared with other users of the machine"),
            Row(f.system, "CPU per saga, whole machine", f"{f.machine_ms:.1f} ms",
                f"{os.cpu_count()} cores allow at most "
                f"{os.cpu_count() * 1000 / f.machine_ms:,.0f}/s at this cost"),
            Row(f.system, "PostgreSQL work", "", f.database_work),
            Row(f.system, "check", "", f.check),
        ]  # fmt: skip
        for line in f.hops:
            rows.append(Row(f.system, "latency phase, hop by hop (p50)", "", line))
        if f.system.startswith("Townhall"):
            if not f.rebuild:
                rows.append(Row(f.system, "projection rebuild", "skipped",
                                "no projection registered in platform.projections"))  # fmt: skip
            for name, replayed, rate in f.rebuild:
                rows.append(Row(f.system, f"rebuild {name}", f"{rate:,.0f} events/s",
                                f"{replayed} events replayed, in process"))  # fmt: skip
    print_table(
        f"Order saga on PostgreSQL + RabbitMQ, {os.cpu_count()}-core machine shared with other "
        f"work (load {os.getloadavg()[0]:.1f} at the end); peak N={args.count}, latency phase "
        f"{args.seconds:g} s open loop at half the peak; targets: >= 300 sagas/s, p99 < 100 ms",
        rows,
    )
    print("\nside by side")
    width = max(len(f.system) for f in all_figures) + 2 if all_figures else 25
    print(f"{'system':<{width}}{'sagas/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'at /s':>8}"
          f"{'CPU ms/saga':>13}{'machine ms':>12}")  # fmt: skip
    for f in all_figures:
        if f.skipped:
            print(f"{f.system:<{width}}{'skipped':>10}  {f.skipped}")
            continue
        print(f"{f.system:<{width}}{f.peak:>10,.0f}{f.p50:>9.1f}{f.p99:>9.1f}{f.rate:>8,.0f}"
              f"{f.cpu_ms:>13.1f}{f.machine_ms:>12.1f}")  # fmt: skip


def broker_up(within: float = 60.0) -> None:
    """Wait for RabbitMQ to take a connection: on a shared machine it is at times slow to."""
    deadline = time.monotonic() + within
    while not amqp_answers(5.0):
        if time.monotonic() > deadline:
            raise SystemExit(f"RabbitMQ at 127.0.0.1:5672 did not answer within {within:.0f} s")
        time.sleep(1.0)


def isolated(system: str, procs: Processes, run: Any, *args: Any) -> Figures:
    """One system's figures; a failure is reported in its row, and the others still run. A
    failed run is tried once more: on the shared machine the broker at times takes longer
    than a process's 15 s to let it connect, which ends the process."""
    for attempt in (1, 2):
        broker_up()
        try:
            figures: Figures = run(*args)
            return figures
        except (Exception, SystemExit) as exc:
            if isinstance(exc, SystemExit) and "stopped by signal" in str(exc):
                raise
            print(f"{system} failed: {exc}", file=sys.stderr, flush=True)
            if attempt == 1:
                print(f"{system}: once more", file=sys.stderr, flush=True)
                continue
            return Figures(system, skipped=f"failed: {str(exc)[:300]}")
        finally:
            procs.stop_all()
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="orchestration,choreography")
    parser.add_argument("--count", type=int, default=1000, help="orders of the peak phase")
    parser.add_argument("--connections", type=int, default=32, help="POST connections, peak")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase length")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--celery-pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--celery-concurrency", type=int, default=4)
    parser.add_argument("--celery-client-threads", type=int, default=8)
    parser.add_argument(
        "--relay-linger",
        type=float,
        default=None,
        help="experiment: run the relay with this linger (seconds; the code's default: 0.01)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy every Townhall process, peak phase"
    )
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]

    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start", flush=True)
    run_id = uuid.uuid4().hex[:8]
    logs = Path(tempfile.mkdtemp(prefix="townhall-ordersbench-"))
    procs = Processes(logs)
    made: dict[str, list[str]] = {"databases": [], "prefixes": [], "celery_queues": []}
    all_figures: list[Figures] = []
    try:
        with terminated_on_signal():
            for mode in modes:
                why_not = saga_mode_supported(mode)
                if why_not is not None and mode != "orchestration":
                    print(f"skip {mode}: {why_not}", flush=True)
                    all_figures.append(Figures(f"Townhall {mode}", skipped=why_not))
                    continue
                print(f"running Townhall, {mode} ...", flush=True)
                all_figures.append(
                    isolated(f"Townhall {mode}", procs, run_townhall, mode, args, procs, run_id,
                             made)
                )  # fmt: skip
            if not args.skip_celery:
                print("running the Celery canvas ...", flush=True)
                all_figures.append(
                    isolated("Celery canvas", procs, run_celery, args, procs, run_id, made)
                )
    finally:
        cleanup("processes", procs.stop_all)
        cleanup("RabbitMQ", lambda: remove_rabbit(made))
        for database in made["databases"]:
            cleanup(
                f"database {database}",
                lambda database=database: run_sql(
                    f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
                ),
            )
        print(f"(process logs in {logs})", file=sys.stderr)
    table(all_figures, args)


if __name__ == "__main__":
    main()
