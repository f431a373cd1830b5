"""The order saga over real `townhall serve` processes, SIGKILLed mid-saga (issue 21).

On PostgreSQL + RabbitMQ the four modules run in four processes: `serve --modules orders` (the
edge, the orchestrator and its timers; it carries inventory, which orders requires),
`serve --modules inventory`, `serve --modules payments --no-relay`, `serve --modules shipping
--no-relay` (the first two relay the outbox). In choreography the edge places orders through
payments' vault, so it is `serve --modules orders,payments --no-consumers`, and the orders'
consumer groups run in a `townhall worker` of their own: payments' consumers stay in the
payments process, which the test can pause. On SQLite + the in-process bus, one `serve` runs
them all. Payments talks to a Stripe-like server of the
test, which outlives the payments process as a provider does.

- A crash at each step: on PostgreSQL + RabbitMQ three orders are held, one at each step (a row
  lock of the test holds inventory's reservation; the payments and shipping processes are
  SIGSTOPped), then the orchestrator and every participant are SIGKILLed and started again:
  each order is confirmed once, each command sent once. On SQLite + the in-process bus, where
  what the bus held dies with the process, the process is SIGKILLed while orders stream in,
  until it has died with sagas waiting at each of the three steps: after the restart every
  order ends once, and nothing of an order that is not confirmed is left held or taken.
- The split processes with the orders processes SIGKILLed while orders stream in: every order
  ends terminal, once, and the participants' records agree with it.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from support.app import PASSWORD
from support.notifications import bus_url, eventually
from support.participants import STACKS
from support.process import STREAM_LIMITS, free_port, start_townhall, townhall_env
from support.saga_checks import (
    CAPTURE,
    CONFIRMED,
    DECLINED_CARD,
    GOOD_CARD,
    REFUSED_COUNTRY,
    RESERVE,
    SHIP,
    TERMINAL,
    check_course,
    order_events,
    rows,
    timeline,
)
from support.services import create_database, database_name, drop_database, require
from support.stripe_server import SECRET_KEY, StripeLikeServer
from townhall.platform.db import Database

pytestmark = [pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]

PRICE = 1500
# The saga's step timeout. On SQLite a restart outlasts it: sagas waiting at the kill time out,
# and the late answers of their steps are undone (the timeouts' wind-down is crashed too). On
# PostgreSQL + RabbitMQ no hold and restart, even on a loaded machine, may outlast it: each
# held order must end confirmed.
STEP_TIMEOUT = {"sqlite+memory": "2", "postgresql+rabbitmq": "90"}
FORWARD = {RESERVE: "reserve_stock", CAPTURE: "capture_payment", SHIP: "create_shipment"}
# The last timeline entry of an order waiting on a forward step: the step's command, sent
# (orchestration), or the event the next participant reacts to (choreography).
WAITING_AFTER = {
    **{(command, "sent"): step for command, step in FORWARD.items()},
    ("orders.OrderPlaced", "sent"): "reserve_stock",
    ("inventory.StockReserved", "applied"): "capture_payment",
    ("payments.PaymentCaptured", "applied"): "create_shipment",
}
INSTALLATIONS = [
    ("sqlite+memory", "orchestration"),
    ("sqlite+memory", "choreography"),
    ("postgresql+rabbitmq", "orchestration"),
    ("postgresql+rabbitmq", "choreography"),
]


class Serve:
    """One `townhall serve ARGS` process on a port of its own (kept across restarts)."""

    def __init__(self, name: str, env: dict[str, str], args: list[str], logs: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "TOWNHALL_PORT": str(self.port), "TOWNHALL_HOST": "127.0.0.1"}
        self.args = args
        self.log = logs / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        with open(self.log, "a") as out:
            self.process = start_townhall("serve", *self.args, env=self.env, log=out)

    async def ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.base, timeout=1) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{self.name} did not come up"
                await asyncio.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process could not drain
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Worker(Serve):
    """One `townhall worker GROUPS` process: no port; it is ready once it says it runs."""

    RUNNING = "worker running"

    def launch(self) -> None:
        self.started = self.log.read_text().count(self.RUNNING) if self.log.exists() else 0
        with open(self.log, "a") as out:
            self.process = start_townhall("worker", *self.args, env=self.env, log=out)

    async def ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while self.log.read_text().count(self.RUNNING) <= self.started:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"{self.name} did not come up"
            await asyncio.sleep(0.05)


@dataclass
class Installation:
    stack: str
    mode: str  # the saga mode
    database_url: str
    database: Database  # the test's own connection, to read what the modules wrote
    stripe: StripeLikeServer
    processes: dict[str, Serve]
    boss: dict[str, str] = field(default_factory=dict)
    buyer: dict[str, str] = field(default_factory=dict)
    placed: list[str] = field(default_factory=list)  # every order of the installation

    @property
    def split(self) -> bool:
        return len(self.processes) > 1

    @property
    def edge(self) -> Serve:
        return self.processes["orders"]

    async def start(self, *names: str) -> None:
        """Start the named processes (all by default) side by side and wait for each."""
        chosen = [self.processes[name] for name in names or self.processes]
        for process in chosen:
            process.launch()
        await asyncio.gather(*(process.ready() for process in chosen))

    async def place(
        self,
        http: httpx.AsyncClient,
        *,
        sku: str = "tee",
        card: str = GOOD_CARD,
        country: str = "BE",
        key: str | None = None,
    ) -> str:
        """POST an order; a request that got no answer (the edge died) is sent again with its
        Idempotency-Key until it is answered."""
        body = {
            "items": [{"sku": sku, "quantity": 1}],
            "shipping_address": {
                "name": "Ada",
                "line1": "1 Main Street",
                "city": "Ghent",
                "postal_code": "9000",
                "country": country,
            },
            "payment": {"card": card},
        }
        headers = {**self.buyer, "Idempotency-Key": key or uuid.uuid4().hex}
        while True:
            try:
                answer = await http.post(
                    f"{self.edge.base}/api/v1/orders", headers=headers, json=body
                )
            except httpx.TransportError:
                await asyncio.sleep(0.05)
                continue
            assert answer.status_code == 202, answer.text
            order_id = str(answer.json()["id"])
            if order_id not in self.placed:
                self.placed.append(order_id)
            return order_id

    async def ends_of(self, order_ids: set[str]) -> list[str]:
        found = await rows(
            self.database,
            "SELECT stream_id, type FROM eventstore_events WHERE type IN "
            "('OrderConfirmed', 'OrderFailed', 'OrderCancelled')",
        )
        return [r.type for r in found if r.stream_id.removeprefix("order-") in order_ids]

    async def ended(self, order_ids: list[str], *, within: float = 60) -> dict[str, str]:
        """Each order's end (the type of its terminal event), once every order has one."""
        wanted = set(order_ids)

        async def all_ended() -> dict[str, str] | None:
            found = await rows(
                self.database,
                "SELECT stream_id, type FROM eventstore_events WHERE type IN "
                "('OrderConfirmed', 'OrderFailed', 'OrderCancelled')",
            )
            ends = {r.stream_id.removeprefix("order-"): r.type for r in found}
            return ends if wanted <= set(ends) else None

        ends: dict[str, str] = await eventually(all_ended, within=within, interval=0.2)
        return {order_id: ends[order_id] for order_id in order_ids}


async def sign_in(base: str, name: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        made = await http.post(
            "/api/v1/auth/register", json={"username": name, "password": PASSWORD}
        )
        assert made.status_code == 201, made.text
        token = await http.post("/api/v1/auth/token", json={"username": name, "password": PASSWORD})
        return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest_asyncio.fixture(
    scope="module",
    loop_scope="module",
    params=INSTALLATIONS,
    ids=[f"{stack}-{mode}" for stack, mode in INSTALLATIONS],
)
async def installation(request, tmp_path_factory) -> AsyncIterator[Installation]:
    stack, saga_mode = request.param
    database_kind, bus_kind = STACKS[stack]
    tmp = tmp_path_factory.mktemp("orders-processes")
    name = None
    if bus_kind == "rabbitmq":
        require("RabbitMQ", "127.0.0.1", 5672)
    if database_kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'townhall.db'}"
    else:
        name = database_name("e")
        url = await create_database(name)
    stripe = StripeLikeServer()
    await stripe.start()
    env = townhall_env(
        database_url=url,
        # One partition a group (few quorum queues on the shared broker; keys still run
        # concurrently within it); a killed member's partition goes to another after 2 s.
        bus_url=bus_url(bus_kind, "e") + "&partitions=1&lease_ttl=2",
        data_dir=str(tmp / "var"),
        secret_key="orders-processes-" + "x" * 32,
        admins="boss",
        log_level="warning",
        saga_mode=saga_mode,
        payments_gateway="stripe",
        stripe_url=stripe.url,
        stripe_secret_key=SECRET_KEY,
        shipping_refuse_countries=REFUSED_COUNTRY,
        orders_step_timeout=STEP_TIMEOUT[stack],
        **STREAM_LIMITS,
    )
    if bus_kind == "memory":
        processes = {"orders": Serve("all", env, ["--modules", "orders,payments,shipping"], tmp)}
    else:
        later = {**env, "TOWNHALL_MIGRATE_ON_START": "false"}
        if saga_mode == "orchestration":
            processes = {"orders": Serve("orders", env, ["--modules", "orders"], tmp)}
        else:
            edge = ["--modules", "orders,payments", "--no-consumers"]
            processes = {"orders": Serve("orders", env, edge, tmp)}
            groups = ["orders.saga", "orders.choreography"]
            processes["sagas"] = Worker("sagas", later, groups, tmp)
        processes["inventory"] = Serve("inventory", later, ["--modules", "inventory"], tmp)
        # The outbox is relayed by the orders and inventory processes. A relay takes shards of
        # the outbox in a transaction, so one in a SIGSTOPped process would hold its shards.
        for module in ("payments", "shipping"):
            processes[module] = Serve(module, later, ["--modules", module, "--no-relay"], tmp)
    database = Database(url)
    installation = Installation(stack, saga_mode, url, database, stripe, processes)
    try:
        await installation.start("orders")  # migrates, before the others start
        if installation.split:
            await installation.start(*(name for name in processes if name != "orders"))
        installation.boss = await sign_in(installation.edge.base, "boss")
        installation.buyer = await sign_in(installation.edge.base, f"b{uuid.uuid4().hex[:8]}")
        async with httpx.AsyncClient(base_url=installation.edge.base, timeout=10) as http:
            for sku, stock in (("tee", 100_000), ("held", 10)):
                product = {
                    "sku": sku,
                    "name": sku,
                    "price_cents": PRICE,
                    "currency": "EUR",
                    "stock": stock,
                }
                made = await http.post("/api/v1/products", headers=installation.boss, json=product)
                assert made.status_code == 201, made.text
        yield installation
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes.values()))
        await database.dispose()
        await stripe.stop()
        if name is not None:
            await drop_database(name)


async def waiting_on(installation: Installation) -> dict[str, str]:
    """The orders whose saga waits on a forward step's answer: order id -> step. (The last
    entry of its timeline is the step's command, sent.)"""
    steps = await rows(
        installation.database,
        "SELECT order_id, message_type, outcome FROM orders_saga_steps ORDER BY id",
    )
    last: dict[str, Any] = {}
    for step in steps:
        last[step.order_id] = step
    return {
        order_id: WAITING_AFTER[(step.message_type, step.outcome)]
        for order_id, step in last.items()
        if (step.message_type, step.outcome) in WAITING_AFTER
    }


async def check_outcomes(installation: Installation, order_ids: list[str]) -> dict[str, int]:
    """Every order ended once, and what the participants hold of it comes to agree with its
    end: a confirmed order's payment captured, its stock committed, its parcel booked; of any
    other order nothing is left taken or held (a late success is undone after the end, hence
    "comes to"). The money the payments table and the provider keep is the confirmed orders'.
    Returns how many orders ended each way."""
    ends = await installation.ended(order_ids)
    database = installation.database
    for order_id in order_ids:
        events = await order_events(database, order_id)
        assert sum(events.count(end) for end in TERMINAL) == 1, (order_id, events)
    counts: dict[str, int] = {}
    for failed in await rows(
        database, "SELECT stream_id, data FROM eventstore_events WHERE type = 'OrderFailed'"
    ):
        if failed.stream_id.removeprefix("order-") in ends:
            data = json.loads(failed.data) if isinstance(failed.data, str) else failed.data
            counts[data["reason"]] = counts.get(data["reason"], 0) + 1
    counts["confirmed"] = sum(1 for end in ends.values() if end == "OrderConfirmed")
    for order_id in order_ids:
        compensations_once_last_first(order_id, await timeline(database, order_id))
    deadline = time.monotonic() + 30
    while True:
        try:
            await participants_agree(installation, ends)
            return counts
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def compensations_once_last_first(order_id: str, steps: list) -> None:
    """Each compensation took effect once (its acknowledgement applied at most once), and the
    refund came before the release, unless a late success was undone after the wind-down."""
    applied = [s.message_type for s in steps if s.outcome == "applied"]
    for acknowledgement in ("payments.PaymentRefunded", "inventory.StockReleased"):
        assert applied.count(acknowledgement) <= 1, (order_id, applied)
    both = {"payments.PaymentRefunded", "inventory.StockReleased"} <= set(applied)
    if both and not any(s.outcome == "late_success" for s in steps):
        refund = next(s for s in steps if s.message_type == "payments.PaymentRefunded")
        release = next(s for s in steps if s.message_type == "inventory.StockReleased")
        if release.causation_id is not None and any(
            s.module != "orders" and s.message_id == release.causation_id for s in steps
        ):  # choreography: the order records events as they arrive; the release's cause tells
            assert release.causation_id == refund.message_id, (order_id, applied)
        else:  # orchestration: the orchestrator sent the release after the refund's answer
            assert applied.index("payments.PaymentRefunded") < applied.index(
                "inventory.StockReleased"
            ), (order_id, applied)


async def participants_agree(installation: Installation, ends: dict[str, str]) -> None:
    database = installation.database
    payments = {r.order_id: r for r in await rows(database, "SELECT * FROM payments_payments")}
    reservations = {
        r.order_id: r.status
        for r in await rows(database, "SELECT order_id, status FROM inventory_reservations")
    }
    shipments = {
        r.order_id: r.status
        for r in await rows(database, "SELECT order_id, status FROM shipping_shipments")
    }
    for order_id, end in ends.items():
        payment = payments.get(order_id)
        reservation = reservations.get(order_id)
        shipment = shipments.get(order_id)
        paid = payment and (payment.status, payment.amount_cents, payment.refunded_cents)
        what = (order_id, end, paid, reservation, shipment)
        if end == "OrderConfirmed":
            assert paid == ("captured", PRICE, 0), what
            assert (reservation, shipment) == ("committed", "created"), what
        else:
            assert payment is None or payment.status in ("failed", "refunded"), what
            if payment is not None and payment.status == "refunded":
                assert payment.refunded_cents == payment.amount_cents, what
            assert reservation in (None, "failed", "released"), what
            assert shipment in (None, "failed", "cancelled"), what
    # The provider's side, over every order of this installation: charged once, refunded once.
    placed = set(installation.placed)
    confirmed = sum(1 for r in await installation.ends_of(placed) if r == "OrderConfirmed")
    stripe = installation.stripe
    assert stripe.captured_cents - sum(r["amount"] for r in stripe.refunds) == PRICE * confirmed


async def test_a_sigkill_at_each_step_then_a_restart_ends_each_saga_once(installation):
    async with httpx.AsyncClient(timeout=10) as http:
        if installation.split:
            await crash_with_one_order_held_at_each_step(installation, http)
        else:
            await crash_while_orders_stream_in_until_each_step_was_hit(installation, http)


async def crash_with_one_order_held_at_each_step(
    installation: Installation, http: httpx.AsyncClient
) -> None:
    import asyncpg

    """Shipping paused (SIGSTOP): an order waits at create_shipment; payments paused: another
    waits at capture_payment; the row of product `held` locked by the test: a third waits at
    reserve_stock, its reservation blocked in the inventory handler that took it. Then every
    process is SIGKILLed (the orchestrator, and each participant with its step in hand), the
    lock let go, and the processes started again."""
    held: dict[str, str] = {}

    async def waits_at(order_id: str, step: str) -> bool:
        return (await waiting_on(installation)).get(order_id) == step

    installation.processes["shipping"].signal(signal.SIGSTOP)
    held["create_shipment"] = await installation.place(http)
    await eventually(lambda: waits_at(held["create_shipment"], "create_shipment"), within=45)
    installation.processes["payments"].signal(signal.SIGSTOP)
    held["capture_payment"] = await installation.place(http)
    await eventually(lambda: waits_at(held["capture_payment"], "capture_payment"), within=45)
    dsn = installation.database_url.replace("postgresql+asyncpg", "postgresql")
    lock = await asyncpg.connect(dsn)
    try:
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute("SELECT 1 FROM inventory_products WHERE sku = 'held' FOR UPDATE")
        held["reserve_stock"] = await installation.place(http, sku="held")

        async def reservation_blocked() -> bool:
            waiting = await lock.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            return bool(waiting)

        try:
            await eventually(reservation_blocked, within=45)
        except AssertionError:
            outbox = await lock.fetch(
                "SELECT topic, sent_at, settled_at FROM outbox_messages WHERE key = $1",
                held["reserve_stock"],
            )
            activity = await lock.fetch(
                "SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query "
                "FROM pg_stat_activity WHERE datname = current_database()"
            )
            raise AssertionError(f"not blocked: outbox {outbox}, activity {activity}") from None
        assert await waiting_on(installation) == {o: step for step, o in held.items()}
        for process in installation.processes.values():
            process.kill()  # the orchestrator, and each participant with its step in hand
        await transaction.rollback()
    finally:
        await lock.close()
    await installation.start()
    ends = await installation.ended(list(held.values()))
    histories = {step: await order_events(installation.database, o) for step, o in held.items()}
    assert set(ends.values()) == {"OrderConfirmed"}, histories
    for order_id in held.values():
        database = installation.database
        check_course(
            CONFIRMED,
            await order_events(database, order_id),
            await timeline(database, order_id),
            installation.mode,
        )
    await check_outcomes(installation, list(held.values()))


async def stream_orders(
    installation: Installation, http: httpx.AsyncClient, crashes: Callable[[], Awaitable[int]]
) -> None:
    """Orders posted by 8 buyers' loops (one in 7 to a refused country, one card in 7
    declined) while `crashes` runs (it returns how many SIGKILLs it made); then every order
    must end once, consistent with what the participants hold."""
    accepted: list[str] = []
    stop = asyncio.Event()
    cards = [GOOD_CARD] * 6 + [DECLINED_CARD]

    async def post(worker: int) -> None:
        n = 0
        while not stop.is_set():
            country = REFUSED_COUNTRY if n % 7 == 3 else "BE"
            key = f"{uuid.uuid4().hex[:6]}-{worker}-{n}"
            accepted.append(
                await installation.place(http, card=random.choice(cards), country=country, key=key)
            )
            n += 1

    posters = [asyncio.create_task(post(worker)) for worker in range(8)]
    try:
        kills = await crashes()
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*posters, return_exceptions=True)
    for poster in posters:
        poster.result()  # a poster's failed assertion fails the test
    counts = await check_outcomes(installation, accepted)
    print(f"\n{installation.stack}: {kills} SIGKILLs, {len(accepted)} orders: {counts}")


async def crash_while_orders_stream_in_until_each_step_was_hit(
    installation: Installation, http: httpx.AsyncClient
) -> None:
    hit: set[str] = set()

    async def crashes() -> int:
        kills = 0
        while hit != set(FORWARD.values()) and kills < 6:
            await asyncio.sleep(0.3)

            async def waiting_somewhere_new() -> bool:
                return bool(set((await waiting_on(installation)).values()) - hit)

            await eventually(waiting_somewhere_new, within=20, interval=0.01)
            installation.edge.kill()
            kills += 1
            hit.update((await waiting_on(installation)).values())  # as the process left them
            await installation.start()
        return kills

    await stream_orders(installation, http, crashes)
    assert hit == set(FORWARD.values())


SPLIT = [("postgresql+rabbitmq", "orchestration"), ("postgresql+rabbitmq", "choreography")]


@pytest.mark.parametrize(
    "installation", SPLIT, ids=[f"{stack}-{mode}" for stack, mode in SPLIT], indirect=True
)
async def test_split_processes_end_every_order_with_the_orders_processes_sigkilled_mid_stream(
    installation,
):
    """The orders processes (the orchestrator; in choreography the edge and the orders'
    worker) are SIGKILLed twice under load and started again."""
    orders = [name for name in ("orders", "sagas") if name in installation.processes]

    async def crashes() -> int:
        for _ in range(2):
            await asyncio.sleep(random.uniform(0.5, 1.0))  # a random instant under load
            for name in orders:
                installation.processes[name].kill()
            await installation.start(*orders)
        return 2

    async with httpx.AsyncClient(timeout=10) as http:
        await stream_orders(installation, http, crashes)
