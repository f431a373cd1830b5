"""Benchmark: notifications end to end (POST accepted -> email received by an SMTP server) on
PostgreSQL + RabbitMQ with 2 email worker processes, beside the same workload as a Celery task.

    .venv/bin/python bench/notifications.py [--quick] [--count 2000] [--rate 500] [--seconds 10]

Processes: an SMTP receiver (`bench/smtp_receiver.py`, its own process; it records every
message's `X-Townhall-Notification` id and arrival time), the HTTP edge (`townhall serve
--no-consumers --no-relay`), `townhall relay`, 2 x `townhall worker notifications.email`, and
later 2 Celery workers. The relay and the workers (Celery's too) are background work: they go
into an idle cgroup where the machine allows one (`--background idle`, the default), else run
at a lower nice (`--background nice`, `--background-nice`, default 10; 0 puts everything at
one priority), as one would deploy them beside the edge on one machine
(`bench/cpu_priority.py`). Phases:
1. N notifications POSTed as fast as a concurrent client can: end-to-end emails/s, duplicates,
   losses. 2. POSTs paced at a fixed rate (open loop) for ~10 s: POST p50/p99, measured from
   each request's scheduled start; then again with the workers paused (SIGSTOP), the edge's
   own latency with no delivery work beside it (the deliveries go on SIGCONT). 3. A stream
   of 1,000 during which one worker is SIGKILLed mid-way and restarted: losses and
   duplicates. Then Celery: `delay()` p50/p99 at the same fixed rate, and end-to-end
   emails/s with 2 workers sending with smtplib.
Every timed phase runs with the client's heap frozen (`client_without_pauses`): its own
garbage collections would otherwise be measured as the edge's latency. Prints tables; asserts
nothing about time. Every process, the database and the RabbitMQ queues it creates are removed
at the end, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from cpu_priority import IdleGroup, renice  # noqa: E402  (bench/ is on the path)
from smtp_receiver import KINDS, Receiver, smtp_capacity  # noqa: E402
from townhall.platform.heap import settle_heap  # noqa: E402

AMQP = ("127.0.0.1", 5672)
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN, PASSWORD = "benchadmin", "benchmark password"


@dataclass
class Delivery:
    ids: set[str]
    first_accepted: float
    duplicates: int
    lost: int
    last_arrival: float | None

    @property
    def emails_per_second(self) -> float:
        if self.last_arrival is None or self.lost:
            return float("nan")
        return len(self.ids) / (self.last_arrival - self.first_accepted)


def account(receiver: Receiver, ids: set[str], first_accepted: float) -> Delivery:
    arrived = [receiver.arrivals[i] for i in ids if i in receiver.arrivals]
    return Delivery(
        ids=ids,
        first_accepted=first_accepted,
        duplicates=sum(len(times) - 1 for times in arrived),
        lost=len(ids) - len(arrived),
        last_arrival=max((min(times) for times in arrived), default=None),
    )


# --- processes ----------------------------------------------------------------------------


class Processes:
    """Every child process the benchmark starts, each in its own process group."""

    def __init__(
        self, logs: Path, background_nice: int = 0, idle_group: IdleGroup | None = None
    ) -> None:
        self.logs = logs
        self.background_nice = background_nice
        self.idle_group = idle_group
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._log_start: dict[str, int] = {}  # a restarted process appends to its log

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        cwd: Path | None = None,
        *,
        background: bool = False,
    ) -> None:
        """Start `name`; a background process (relay, workers) goes into the idle group if
        there is one, else gets the lower nice."""
        log = open(self.logs / f"{name}.log", "ab")
        self._log_start[name] = log.tell()
        self.running[name] = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if background and self.idle_group is not None:
            self.idle_group.add(self.running[name].pid)
        elif background and self.background_nice:
            renice(self.running[name].pid, self.background_nice)

    def cpu_seconds(self, name: str) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.running[name].pid}/stat").read_text().rsplit(")", 1)[1]
        user, system = fields.split()[11:13]
        return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")

    def cpu_of(self, names: list[str]) -> dict[str, float]:
        return {name: self.cpu_seconds(name) for name in names if name in self.running}

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_for_log(self, name: str, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_of(name)[self._log_start[name] :]:
                return
            if self.running[name].poll() is not None:
                raise SystemExit(f"{name} exited:\n{self.log_of(name)[-3000:]}")
            time.sleep(0.1)
        raise SystemExit(f"{name} did not say {text!r} within {timeout:.0f} s")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.running.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def signal(self, names: list[str], sig: int) -> None:
        """Send `sig` to the process groups of `names` (SIGSTOP pauses, SIGCONT resumes)."""
        for name in names:
            os.killpg(self.running[name].pid, sig)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name, signal.SIGTERM)


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far, all cores (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_by_command(commands: tuple[str, ...]) -> dict[str, float]:
    """User + system CPU seconds of every live process per command name (postgres, beam.smp):
    the services' share, which the benchmark's own processes do not show."""
    totals = dict.fromkeys(commands, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name in totals:
            user, system = text.rsplit(")", 1)[1].split()[11:13]
            totals[name] += (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")
    return totals


SERVICES = ("postgres", "beam.smp")


class CpuSpent:
    """CPU the whole machine and the services spend from creation on, per item of work."""

    def __init__(self) -> None:
        self._services = cpu_by_command(SERVICES)
        self._machine = machine_cpu_seconds()

    def per_item(self, items: int) -> tuple[float, dict[str, float]]:
        """Milliseconds per item: the whole machine's, and each service's by command name."""
        machine = (machine_cpu_seconds() - self._machine) / items * 1000
        services = {
            name: (seconds - self._services[name]) / items * 1000
            for name, seconds in cpu_by_command(SERVICES).items()
        }
        return machine, services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def amqp_answers(timeout: float = 5.0) -> bool:
    """True if RabbitMQ answers the AMQP 0-9-1 protocol header with Connection.Start."""
    try:
        with socket.create_connection(AMQP, timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
            return len(frame) == 7 and frame[0] == 1  # a METHOD frame
    except OSError:
        return False


def run_sql(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def outbox_topics(database: str) -> list[str]:
    import asyncpg

    async def run() -> list[str]:
        conn = await asyncpg.connect(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{database}")
        try:
            rows = await conn.fetch("SELECT DISTINCT topic FROM outbox_messages")
            return [row["topic"] for row in rows]
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except Exception:
        return []


def delete_rabbit(queues: list[str], exchanges: list[str]) -> int:
    """Delete queues and exchanges by name (deleting an absent one is not an error)."""
    import aio_pika

    async def run() -> int:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        deleted = 0
        try:
            channel = await connection.channel()
            for name in queues:
                try:
                    await channel.queue_delete(name)
                    deleted += 1
                except Exception:
                    channel = await connection.channel()
            for name in exchanges:
                try:
                    await channel.exchange_delete(name)
                except Exception:
                    channel = await connection.channel()
        finally:
            await connection.close()
        return deleted

    return asyncio.run(run())


def townhall_rabbit_names(prefix: str, topics: list[str], groups: list[tuple[str, str]]) -> tuple:
    from townhall.platform.messaging.transport import token

    queues = [
        f"{prefix}.{token(topic)}.{token(group)}.{partition}"
        for topic, group in groups
        for partition in [*range(8), "dlq"]
    ]
    exchanges = [f"{prefix}.bus.{token(topic)}" for topic in topics]
    exchanges += [f"{prefix}.members.{token(topic)}.{token(group)}" for topic, group in groups]
    exchanges.append(f"{prefix}.dlx")
    return queues, exchanges


# --- a thin HTTP/1.1 client on raw sockets (keep-alive), as bench/loadgen.py -----------------


class Http:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Http:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        response = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in response.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(response[9:12]), await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


@dataclass
class Poster:
    port: int
    token: str
    recipient: str
    ids: list[str] = field(default_factory=list)
    errors: int = 0

    @property
    def head(self) -> bytes:
        return (
            f"POST /api/v1/notifications HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()

    def body(self, index: int) -> bytes:
        return json.dumps(
            {
                "recipient": self.recipient,
                "channels": ["email"],
                "subject": f"Bench {index}",
                "body": f"Notification number {index} of the benchmark.",
            }
        ).encode()

    def record(self, status: int, body: bytes) -> bool:
        if status != 202:
            self.errors += 1
            return False
        self.ids.append(json.loads(body)["id"])
        return True


async def post_as_fast_as_possible(poster: Poster, count: int, concurrency: int) -> float:
    """POST `count` notifications on `concurrency` connections; the first 202's wall time."""
    head = poster.head
    first: list[float] = []
    remaining = iter(range(count))

    async def connection() -> None:
        http = await Http.open(poster.port)
        try:
            for index in remaining:
                status, body = await http.post(head, poster.body(index))
                if poster.record(status, body) and not first:
                    first.append(time.time())
        finally:
            http.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return first[0]


async def post_paced(
    poster: Poster, rate: float, seconds: float, connections: int = 64
) -> tuple[list[float], list[float], float]:
    """Open loop: request i starts at t0 + i/rate whatever the earlier ones do. Latency from
    the scheduled start (includes waiting for a free connection) and from the send."""
    head, pool = poster.head, asyncio.Queue[Http]()
    for _ in range(connections):
        pool.put_nowait(await Http.open(poster.port))
    scheduled_ms: list[float] = []
    service_ms: list[float] = []
    tasks = []

    async def one(index: int, due: float) -> None:
        http = await pool.get()
        sent = time.perf_counter()
        status, body = await http.post(head, poster.body(index))
        done = time.perf_counter()
        pool.put_nowait(http)
        if poster.record(status, body):
            scheduled_ms.append((done - due) * 1000)
            service_ms.append((done - sent) * 1000)

    total = int(rate * seconds)
    started = time.perf_counter()
    for index in range(total):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait().close()
    return scheduled_ms, service_ms, total / elapsed


@contextmanager
def client_without_pauses() -> Iterator[None]:
    """While a timed phase runs, this process is the load client: a full collection of its
    own heap (the receiver's arrivals and the ids of every earlier phase) stalls it, and
    every request in flight is measured that much late (slow answers came in bursts of 20-80
    within 100-300 ms until this was done). Collect once before and freeze what is left, as
    the edge does with its start-up heap (`settle_heap`)."""
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# --- Townhall -------------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    measure: str
    value: str
    note: str = ""


def townhall_env(database_url: str, bus_url: str, smtp_port: int, http_port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")}
    env.update(
        TOWNHALL_DATABASE_URL=database_url,
        TOWNHALL_BUS_URL=bus_url,
        TOWNHALL_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        TOWNHALL_ADMINS=ADMIN,
        TOWNHALL_SECRET_KEY=secrets.token_urlsafe(48),
        TOWNHALL_PORT=str(http_port),
        TOWNHALL_RATE_LIMITS="default=100000000/minute;auth=100000/minute",
        TOWNHALL_RATE_LIMIT_IP="100000000/minute",
        TOWNHALL_PROVIDER_RATE="1000000",
        TOWNHALL_PROVIDER_BURST="100000",
        TOWNHALL_NOTIFICATION_MAX_ATTEMPTS="10",
        TOWNHALL_MIGRATE_ON_START="false",
        TOWNHALL_LOG_LEVEL="warning",
    )
    return env


def townhall_call(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "townhall", *args], env=env, capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"townhall {' '.join(args)} failed: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


def start_worker(procs: Processes, name: str, env: dict[str, str]) -> None:
    procs.start(
        name,
        [sys.executable, "-m", "townhall", "worker", "notifications.email"],
        env,
        background=True,
    )
    procs.wait_for_log(name, "worker running")


def setup_townhall(procs: Processes, env: dict[str, str], port: int) -> Poster:
    import httpx

    townhall_call(["migrate"], env)
    edge = [sys.executable, "-m", "townhall", "serve", "--no-consumers", "--no-relay"]
    procs.start("serve", edge, env)
    procs.start("relay", [sys.executable, "-m", "townhall", "relay"], env, background=True)
    procs.wait_for_log("serve", "Townhall is up")
    base = f"http://127.0.0.1:{port}/api/v1"
    recipient = httpx.post(
        f"{base}/auth/register",
        json={"username": "recipient", "password": PASSWORD, "email": "recipient@example.org"},
    )
    recipient.raise_for_status()
    # The admin is TOWNHALL_ADMINS' name, registered like anyone. (`townhall users
    # create-admin` migrates identity alone and fails on a fully migrated database.)
    httpx.post(
        f"{base}/auth/register", json={"username": ADMIN, "password": PASSWORD}
    ).raise_for_status()
    token = httpx.post(f"{base}/auth/token", json={"username": ADMIN, "password": PASSWORD})
    token.raise_for_status()
    for name in ("worker1", "worker2"):
        start_worker(procs, name, env)
    time.sleep(1.0)  # both members see each other and share the partitions out
    return Poster(port, token.json()["access_token"], recipient.json()["id"])


def townhall_phases(
    procs: Processes, env: dict[str, str], poster: Poster, receiver: Receiver, args: Any
) -> list[Row]:
    rows: list[Row] = []
    # Warm-up: the first requests pay for imports, connection pools, queue declarations.
    asyncio.run(post_as_fast_as_possible(poster, 50, 8))
    receiver.wait_for(set(poster.ids))
    poster.ids.clear()

    # Phase 1: as fast as possible.
    names = ["serve", "relay", "worker1", "worker2"]
    cpu_before = procs.cpu_of(names)
    spent = CpuSpent()
    with client_without_pauses():
        started = time.perf_counter()
        first = asyncio.run(post_as_fast_as_possible(poster, args.count, args.concurrency))
    post_seconds = time.perf_counter() - started
    ids = set(poster.ids)
    receiver.wait_for(ids)
    receiver.settle()
    result = account(receiver, ids, first)
    cpu = {name: seconds - cpu_before[name] for name, seconds in procs.cpu_of(names).items()}
    machine_ms, services_ms = spent.per_item(len(ids))
    serve_ms = (cpu.get("serve", 0.0) + cpu.get("relay", 0.0)) / len(ids) * 1000
    worker_ms = (cpu.get("worker1", 0.0) + cpu.get("worker2", 0.0)) / len(ids) * 1000
    rows += [
        Row("Townhall", f"POST x{args.count}, {args.concurrency} connections",
            f"{len(ids) / post_seconds:,.0f} req/s", f"{poster.errors} errors"),
        Row("Townhall", "end to end, 2 workers", f"{result.emails_per_second:,.0f} emails/s",
            f"first 202 -> last email {(result.last_arrival or 0) - first:.2f} s"),
        Row("Townhall", "phase 1 duplicates / losses", f"{result.duplicates} / {result.lost}"),
        Row("Townhall", "CPU per notification, phase 1",
            f"{serve_ms:.1f} + {worker_ms:.1f} ms",
            "serve (edge) and relay + both workers; PostgreSQL and RabbitMQ not counted"),
        Row("Townhall", "CPU per notification, PostgreSQL / RabbitMQ",
            f"{services_ms['postgres']:.1f} / {services_ms['beam.smp']:.1f} ms",
            "their server processes"),
        Row("Townhall", "CPU per notification, whole machine", f"{machine_ms:.1f} ms",
            f"every process, this client and the SMTP receiver too; {os.cpu_count()} cores "
            f"allow at most {os.cpu_count() * 1000 / machine_ms:,.0f}/s at this cost"),
    ]  # fmt: skip
    poster.ids.clear()

    # Phase 2: fixed rate, open loop.
    scheduled, service, achieved, paced = paced_phase(poster, receiver, procs, args, pause=[])
    rows += [
        Row("Townhall", f"POST at {args.rate:g}/s p50 / p99",
            f"{percentile(scheduled, 50):.2f} / {percentile(scheduled, 99):.2f} ms",
            f"achieved {achieved:.0f}/s; from the send: {percentile(service, 50):.2f} / "
            f"{percentile(service, 99):.2f} ms"),
        Row("Townhall", "phase 2 duplicates / losses", f"{paced.duplicates} / {paced.lost}"),
    ]  # fmt: skip

    # Phase 2b: the same, with the workers paused (SIGSTOP): the edge's own latency, with
    # no delivery work on the same cores. Deliveries wait in RabbitMQ and go on SIGCONT.
    workers = ["worker1", "worker2"]
    scheduled, _, achieved, paused = paced_phase(poster, receiver, procs, args, pause=workers)
    rows += [
        Row("Townhall", f"POST at {args.rate:g}/s p50 / p99, workers paused",
            f"{percentile(scheduled, 50):.2f} / {percentile(scheduled, 99):.2f} ms",
            f"achieved {achieved:.0f}/s; delivered after SIGCONT: {paused.duplicates} dup / "
            f"{paused.lost} lost"),
    ]  # fmt: skip

    # Phase 3: a stream during which one worker is SIGKILLed and restarted.
    rows += kill_phase(procs, env, poster, receiver, args)
    return rows


def paced_phase(
    poster: Poster, receiver: Receiver, procs: Processes, args: Any, pause: list[str]
) -> tuple[list[float], list[float], float, Delivery]:
    """POSTs at the fixed rate with the processes `pause` stopped meanwhile, then every email
    of them awaited: latencies from the scheduled start and from the send, the rate achieved,
    and what was delivered."""
    procs.signal(pause, signal.SIGSTOP)
    try:
        with client_without_pauses():
            scheduled, service, achieved = asyncio.run(post_paced(poster, args.rate, args.seconds))
    finally:
        procs.signal(pause, signal.SIGCONT)
    ids = set(poster.ids)
    receiver.wait_for(ids)
    receiver.settle()
    poster.ids.clear()
    return scheduled, service, achieved, account(receiver, ids, 0.0)


def kill_phase(
    procs: Processes, env: dict[str, str], poster: Poster, receiver: Receiver, args: Any
) -> list[Row]:
    count = args.kill_count
    posting_done = asyncio.Event()
    killed: dict[str, float] = {}

    async def killer() -> None:
        # Mid-way: once a third of the stream has been received, while POSTs still arrive.
        while not posting_done.is_set():
            if receiver.received(set(poster.ids)) >= count // 3:
                procs.kill("worker1")  # SIGKILL: no drain, no ack, no goodbye
                killed["at"] = time.time()
                return
            await asyncio.sleep(0.05)

    async def stream() -> float:
        task = asyncio.create_task(killer())
        _, _, _ = await post_paced(poster, args.kill_rate, count / args.kill_rate, connections=16)
        posting_done.set()
        await task
        return time.time()

    first_post = time.time()
    asyncio.run(stream())
    if "at" in killed:
        procs.start("worker1", [sys.executable, "-m", "townhall", "worker", "notifications.email"],
                    env)  # fmt: skip
        procs.wait_for_log("worker1", "worker running")
    ids = set(poster.ids)
    receiver.wait_for(ids, stall=60.0)
    receiver.settle(2.0)
    result = account(receiver, ids, first_post)
    poster.ids.clear()
    if "at" not in killed:
        when = "the stream ended before the kill point"
    else:
        when = (
            f"killed {killed['at'] - first_post:.1f} s after the first POST; all in "
            f"{(result.last_arrival or 0) - first_post:.1f} s"
            + resent_before(receiver, ids, killed["at"])
        )
    return [
        Row("Townhall", f"worker SIGKILL in a stream of {count}",
            f"{result.duplicates} dup / {result.lost} lost", when),
    ]  # fmt: skip


def resent_before(receiver: Receiver, ids: set[str], killed_at: float) -> str:
    """Where the resends come from: how long before the SIGKILL the receiver had taken the
    first copy of each email that came twice. Within a few milliseconds: sends the killed
    worker had done but not yet recorded SENT (the window the README states)."""
    offsets = sorted(
        (killed_at - min(times)) * 1000
        for i in ids
        if len(times := receiver.arrivals.get(i, [])) > 1
    )
    if not offsets:
        return ""
    shown = ", ".join(f"{ms:.0f}" for ms in offsets)
    return f"; resent, first copy taken {shown} ms before the kill"


# --- Celery ---------------------------------------------------------------------------------


def celery_phases(procs: Processes, receiver: Receiver, args: Any, queue: str) -> list[Row]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")},
        "BENCH_CELERY_BROKER": AMQP_URL,
        "BENCH_CELERY_QUEUE": queue,
        "BENCH_SMTP_PORT": str(receiver.port),
        "PYTHONPATH": str(HERE),
    }
    os.environ.update({k: env[k] for k in ("BENCH_CELERY_BROKER", "BENCH_CELERY_QUEUE")})
    os.environ["BENCH_SMTP_PORT"] = env["BENCH_SMTP_PORT"]
    import celery_email_task

    for name in ("celery1", "celery2"):
        procs.start(
            name,
            [sys.executable, "-m", "celery", "-A", "celery_email_task", "worker",
             f"--pool={args.celery_pool}", f"--concurrency={args.celery_concurrency}",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel=WARNING", "-n", f"{name}-{queue}@%h"],
            env,
            cwd=HERE,
            background=True,
        )  # fmt: skip
    wait_for_consumers(queue, 2, procs)
    task = celery_email_task.send_email
    rows: list[Row] = []

    def send_many(count: int) -> tuple[set[str], float, float]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        first = 0.0
        started = time.perf_counter()
        for index, notification_id in enumerate(ids):
            task.delay(notification_id, "recipient@example.org", f"Bench {index}",
                       f"Notification number {index} of the benchmark.")  # fmt: skip
            if not first:
                first = time.time()
        return set(ids), first, time.perf_counter() - started

    warm, _, _ = send_many(50)
    receiver.wait_for(warm)

    spent = CpuSpent()
    with client_without_pauses():
        ids, first, seconds = send_many(args.count)
    receiver.wait_for(ids)
    receiver.settle()
    machine_ms, services_ms = spent.per_item(len(ids))
    result = account(receiver, ids, first)
    workers = f"2 workers, {args.celery_pool} x{args.celery_concurrency}"
    rows += [
        Row("Celery", f"delay() x{args.count}, one thread", f"{args.count / seconds:,.0f} calls/s"),
        Row("Celery", f"end to end, {workers}", f"{result.emails_per_second:,.0f} emails/s",
            f"first delay -> last email {(result.last_arrival or 0) - first:.2f} s"),
        Row("Celery", "duplicates / losses", f"{result.duplicates} / {result.lost}"),
        Row("Celery", "CPU per email, RabbitMQ / whole machine",
            f"{services_ms['beam.smp']:.1f} / {machine_ms:.1f} ms",
            "no database: Celery records no status, attempts or idempotency key"),
    ]  # fmt: skip

    latencies: list[float] = []
    paced_ids: set[str] = set()
    total = int(args.rate * args.seconds)
    with client_without_pauses():
        started = time.perf_counter()
        for index in range(total):
            due = started + index / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            notification_id = str(uuid.uuid4())
            task.delay(notification_id, "recipient@example.org", f"Bench {index}", "Paced.")
            latencies.append((time.perf_counter() - due) * 1000)
            paced_ids.add(notification_id)
        achieved = total / (time.perf_counter() - started)
    receiver.wait_for(paced_ids)
    paced = account(receiver, paced_ids, 0.0)
    rows.append(
        Row("Celery", f"delay() at {args.rate:g}/s p50 / p99",
            f"{percentile(latencies, 50):.2f} / {percentile(latencies, 99):.2f} ms",
            f"achieved {achieved:.0f}/s; {paced.lost} lost, {paced.duplicates} dup"),
    )  # fmt: skip
    celery_email_task.app.close()
    return rows


def wait_for_consumers(queue: str, count: int, procs: Processes, timeout: float = 60.0) -> None:
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
        if asyncio.run(consumers()) >= count:
            return
        for name in ("celery1", "celery2"):
            if procs.running[name].poll() is not None:
                raise SystemExit(f"{name} exited:\n{procs.log_of(name)[-3000:]}")
        time.sleep(0.3)
    raise SystemExit(f"the Celery workers did not consume {queue} within {timeout:.0f} s")


# --- main -----------------------------------------------------------------------------------


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}\n")
    header = f"{'system':<9} {'measure':<42} {'value':>22}  note"
    print(header)
    print("-" * (len(header) + 40))
    for row in rows:
        print(f"{row.system:<9} {row.measure:<42} {row.value:>22}  {row.note}")


@contextmanager
def terminated_on_signal() -> Iterator[None]:
    """SIGTERM/SIGHUP run the same clean-up as an exception."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cleanup(step: str, action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:
        print(f"clean-up: {step} failed: {exc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 notifications, 3 s paced")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32, help="POST connections, phase 1")
    parser.add_argument("--rate", type=float, default=500.0, help="paced POSTs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kill-count", type=int, default=1000)
    parser.add_argument("--kill-rate", type=float, default=200.0, help="POSTs/s of the stream")
    parser.add_argument("--celery-pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument(
        "--receiver",
        default="lean",
        choices=KINDS,
        help="the SMTP server that receives the emails (see bench/smtp_receiver.py)",
    )
    parser.add_argument(
        "--background",
        default="idle",
        choices=["idle", "nice"],
        help="how the relay and the workers, Townhall's and Celery's, yield the CPU to the edge "
        "and the load client: an idle cgroup (falls back to nice where none can be made) or "
        "--background-nice (see bench/cpu_priority.py)",
    )
    parser.add_argument(
        "--background-nice",
        type=int,
        default=10,
        help="nice of the relay and the workers with --background nice; 0: everything at one "
        "priority",
    )
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds = min(args.count, 300), min(args.seconds, 3.0)

    if not amqp_answers(5.0):
        raise SystemExit("RabbitMQ at 127.0.0.1:5672 did not answer an AMQP handshake in 5 s")

    run_id = uuid.uuid4().hex[:8]
    database, prefix = f"townhall_nbench_{run_id}", f"nbench{run_id}"
    celery_queue = f"townhall_nbench_celery_{run_id}"
    logs = Path(tempfile.mkdtemp(prefix="townhall-notifbench-"))
    idle_group = (
        IdleGroup.create(f"townhall-nbench-{run_id}") if args.background == "idle" else None
    )
    if args.background == "idle" and idle_group is None:
        print("no cgroup with a writable cpu.idle here; background at nice", file=sys.stderr)
    procs = Processes(logs, args.background_nice, idle_group)
    receiver = Receiver(args.receiver)
    rows: list[Row] = []
    database_created = False
    try:
        with terminated_on_signal():
            capacity = asyncio.run(smtp_capacity(receiver.port, 3000 if not args.quick else 600, 8))
            receiver.poll()
            receiver.arrivals.clear()
            rows.append(
                Row(
                    "receiver",
                    f"{receiver.kind} capacity, 8 connections",
                    f"{capacity:,.0f} emails/s",
                    "aiosmtplib client, one process",
                )
            )
            run_sql(f'CREATE DATABASE "{database}"')
            database_created = True
            port = free_port()
            env = townhall_env(
                f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                f"{AMQP_URL}?prefix={prefix}&queue_expires=120",
                receiver.port,
                port,
            )
            poster = setup_townhall(procs, env, port)
            rows += townhall_phases(procs, env, poster, receiver, args)
            procs.stop_all()
            if not args.skip_celery:
                rows += celery_phases(procs, receiver, args, celery_queue)
    finally:
        cleanup("processes", procs.stop_all)
        if idle_group is not None:
            cleanup("idle cgroup", idle_group.remove)
        cleanup("receiver", receiver.stop)
        topics = outbox_topics(database) if database_created else []
        groups = [("notifications.email", "notifications.email")]
        queues, exchanges = townhall_rabbit_names(prefix, [*topics, "notifications.email"], groups)
        cleanup(
            "RabbitMQ", lambda: delete_rabbit([*queues, celery_queue], [*exchanges, celery_queue])
        )
        if database_created:
            cleanup(
                "database", lambda: run_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            )
        print(f"(process logs in {logs})", file=sys.stderr)

    print_table(
        f"Notifications end to end on PostgreSQL + RabbitMQ, 2-core machine shared; "
        f"N={args.count}, paced {args.rate:g}/s for {args.seconds:g} s; relay and workers "
        + ("in an idle cgroup" if idle_group else f"at nice {args.background_nice}")
        + f"; {receiver.kind} SMTP receiver",
        rows,
    )


if __name__ == "__main__":
    main()
