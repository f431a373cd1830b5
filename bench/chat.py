"""Benchmark: chat gateways, Townhall's beside python-socketio's, on one 2-core machine.

    .venv/bin/python bench/chat.py [--quick] [--systems townhall,socketio] [--idle 10000]
        [--rooms 10,100,1000] [--seconds 10] [--loadgen 2] [--profile]

(a) idle: one gateway holds `--idle` WebSocket connections (authenticated / namespace-connected,
no room joined, answering heartbeats); memory per connection = (VmRSS with all of them - VmRSS
with the first `--idle-base`) / the connections between, from /proc/PID/status; then the
gateway's CPU while they sit idle.
(b) fan-out: two gateways on Redis pub/sub, one room of each size of `--rooms`, its members
split over both gateways (member i on gateway i % 2), `--senders` of them sending (on both
gateways). Every member receives every message, its sender included. First a saturating rate,
closed loop: each sender keeps `--window` messages out and sends the next when its own copy
and its partner's copy (member i ^ 1, on the other gateway) have come back through the fan-out
(so the load follows what both gateways deliver, with no backlog growing without bound);
then open loop at half the message rate that reached: each message is due at a fixed time, and
its latency counts from then. Deliveries/s count the
deliveries of messages sent in the measured window (after `--warmup`); latency is the
receiver's `time.time_ns()` minus the send time in the message body (one wall clock for every
process of the machine).

Townhall: `townhall serve --modules chat` x2 on a PostgreSQL database the benchmark creates
(and drops), pub/sub and bus on Redis under a run-unique prefix, `TOWNHALL_REDIS_URL` the same
Redis, send limits and queues opened wide. A message is stored with its seq before it is acked
and fanned out, so every send is a PostgreSQL transaction. The room owner is registered over
HTTP (`/api/v1/auth/register`, `/auth/token`, through a `serve --modules identity` process
that runs for the set-up only); the other members are copied into identity's table with the
owner's password hash and given tokens signed with the run's secret: argon2 takes ~0.5 s per
hash here, so 1,000 registrations would take minutes. Rooms are made with `POST
/api/v1/chat/rooms`.
python-socketio: `AsyncServer` + `AsyncRedisManager` under uvicorn x2 (`bench/chat_sio_server.py`),
socket.io rooms, a `send` event emitting `message` to the room. It stores nothing. Both run on
uvicorn's default WebSocket protocol (websockets' Sans-I/O), uvloop and httptools.

With the gateways sharing 2 cores with their load, Redis, PostgreSQL and whatever else runs on
the machine, the CPU a gateway gets is not its own to choose: each saturating row also gives
deliveries per gateway CPU-second (deliveries / both gateways' CPU seconds), what one gateway
process with a core of its own would deliver at that cost.

The load generator is `--loadgen` processes of bare WebSocket clients (`bench/chat_client.py`)
on the same 2 cores as the gateways, PostgreSQL and Redis: every figure here is what the
gateways reach while sharing the machine with their load, and the CPU line of each row says
who used it. `--profile` samples gateway 1 with py-spy during each saturating Townhall run
and prints where its CPU goes. Every process, Redis key of the run's prefix and the database
are removed at the end, also on errors. Prints tables; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import chat_client  # noqa: E402  (bench/ is on the path)
from notifications import (  # noqa: E402
    Processes,
    cleanup,
    free_port,
    machine_cpu_seconds,
    percentile,
    run_sql,
    terminated_on_signal,
    townhall_call,
)
from spy import Spies, inclusive, own, read_spy  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = os.environ.get("TOWNHALL_BENCH_REDIS", "redis://127.0.0.1:6379/0")
OWNER, PASSWORD = "chatowner", "benchmark password"
SERVICES = ("postgres", "redis-server")


# --- the load generator processes ------------------------------------------------------------


class LoadGen:
    """`count` processes of `chat_client.Worker`, each driven over a pipe."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(count):
            parent, child = context.Pipe()
            proc = context.Process(target=chat_client.main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def __len__(self) -> int:
        return len(self.pipes)

    def each(self, commands: list[dict[str, Any]], timeout: float = 600.0) -> list[dict]:
        """Send one command to each process (None: skip it); their answers, in order."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise SystemExit(f"a load generator did not answer within {timeout:.0f} s")
            answer = pipe.recv()
            if "error" in answer:
                raise SystemExit(f"load generator: {answer['error']}")
            answers.append(answer)
        return answers

    def all(self, command: dict[str, Any], timeout: float = 600.0) -> list[dict]:
        return self.each([command] * len(self), timeout)

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send({"op": "exit"})
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


# --- the systems -------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class System:
    """A chat system under test: gateways started and stopped, users with tokens, rooms."""

    name = ""
    dialect = ""

    def __init__(self, procs: Processes, run_id: str) -> None:
        self.procs, self.run_id = procs, run_id
        self.ports: list[int] = []

    def gateway_names(self) -> list[str]:
        return [f"{self.dialect}-gw{n + 1}" for n in range(len(self.ports))]

    def pid(self, index: int) -> int:
        return self.procs.running[self.gateway_names()[index]].pid

    def start(self, gateways: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for name in self.gateway_names():
            self.procs.kill(name, 15)
        self.ports = []

    def tokens(self, count: int) -> list[str]:
        raise NotImplementedError

    def room(self, size: int) -> str:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


class SocketIO(System):
    name, dialect = "python-socketio", "socketio"

    def __init__(self, procs: Processes, run_id: str) -> None:
        super().__init__(procs, run_id)
        self.channel = f"chatbench-sio-{run_id}"

    def start(self, gateways: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")}
        env.update(BENCH_SIO_REDIS=REDIS_URL, BENCH_SIO_CHANNEL=self.channel)
        self.ports = [free_port() for _ in range(gateways)]
        for name, port in zip(self.gateway_names(), self.ports, strict=True):
            self.procs.start(
                name,
                [sys.executable, "-m", "uvicorn", "chat_sio_server:app", "--host", "127.0.0.1",
                 "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                 "--ws", "auto", "--log-level", "warning", "--backlog", "4096",
                 "--no-access-log"],
                env,
                cwd=HERE,
            )  # fmt: skip
        for port in self.ports:
            wait_for_port(port)

    def tokens(self, count: int) -> list[str]:
        return [""] * count  # the peer authenticates no one

    def room(self, size: int) -> str:
        return f"room-{size}-{uuid.uuid4().hex[:6]}"


class Townhall(System):
    name, dialect = "Townhall", "townhall"

    def __init__(self, procs: Processes, run_id: str, modules: str) -> None:
        super().__init__(procs, run_id)
        self.modules = modules
        self.database = f"townhall_chatbench_{run_id}"
        self.prefix = f"chatbench{run_id}"
        self.secret = secrets.token_urlsafe(48)
        self.created = False
        self.owner_id = ""
        self.owner_token = ""
        self.user_ids: list[str] = []
        self._tokens: list[str] = []
        self.http_port = 0

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")}
        env.update(
            TOWNHALL_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}",
            TOWNHALL_PUBSUB_URL=f"{REDIS_URL}?prefix={self.prefix}&buffer=100000",
            TOWNHALL_REDIS_URL=REDIS_URL,
            TOWNHALL_BUS_URL=f"{REDIS_URL}?prefix={self.prefix}",
            TOWNHALL_SECRET_KEY=self.secret,
            TOWNHALL_PORT=str(port),
            TOWNHALL_ACCESS_TOKEN_TTL="86400",
            TOWNHALL_RATE_LIMITS="default=100000000/minute;auth=100000/minute",
            TOWNHALL_RATE_LIMIT_IP="100000000/minute",
            TOWNHALL_CHAT_SEND_RATE="100000000",
            TOWNHALL_CHAT_SEND_BURST="100000000",
            TOWNHALL_CHAT_FRAME_RATE="100000000",
            TOWNHALL_CHAT_SEND_QUEUE="100000",
            TOWNHALL_CHAT_MEMBERS_PER_ROOM="100000",
            TOWNHALL_MIGRATE_ON_START="false",
            TOWNHALL_LOG_LEVEL="warning",
        )
        return env

    def prepare(self, users: int) -> None:
        """The database, migrated; the owner registered over HTTP; `users` - 1 more copied
        into identity's table, each with a token signed with the run's secret."""
        import httpx

        run_sql(f'CREATE DATABASE "{self.database}"')
        self.created = True
        townhall_call(["migrate"], self.env(0))
        self.http_port = free_port()
        self.procs.start(
            "townhall-identity",
            [sys.executable, "-m", "townhall", "serve", "--modules", "identity",
             "--no-consumers", "--no-relay"],
            self.env(self.http_port),
        )  # fmt: skip
        self.procs.wait_for_log("townhall-identity", "Townhall is up")
        base = f"http://127.0.0.1:{self.http_port}/api/v1"
        answer = httpx.post(
            f"{base}/auth/register", json={"username": OWNER, "password": PASSWORD}, timeout=60
        )
        answer.raise_for_status()
        self.owner_id = str(answer.json()["id"])
        answer = httpx.post(
            f"{base}/auth/token", json={"username": OWNER, "password": PASSWORD}, timeout=60
        )
        answer.raise_for_status()
        self.owner_token = answer.json()["access_token"]
        self.procs.kill("townhall-identity", 15)
        self.user_ids = [self.owner_id, *asyncio.run(self.copy_users(users - 1))]
        self._tokens = [self.owner_token, *self.sign(self.user_ids[1:])]

    async def copy_users(self, count: int) -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(f"{POSTGRES}/{self.database}")
        try:
            row = await conn.fetchrow("SELECT * FROM identity_users WHERE username = $1", OWNER)
            ids = [str(uuid.uuid4()) for _ in range(count)]
            await conn.executemany(
                "INSERT INTO identity_users (id, username, password_hash, time_zone, locale,"
                " is_admin, created_at) VALUES ($1, $2, $3, $4, $5, false, now())",
                [
                    (user_id, f"member{n}", row["password_hash"], row["time_zone"], row["locale"])
                    for n, user_id in enumerate(ids)
                ],
            )
            return ids
        finally:
            await conn.close()

    def sign(self, user_ids: list[str]) -> list[str]:
        from townhall.platform.auth import Principal, TokenCodec
        from townhall.platform.clock import SystemClock

        codec = TokenCodec(self.secret, SystemClock(), access_ttl=86400)
        return [
            codec.issue(Principal(user_id=user_id, username=f"member{n}"))
            for n, user_id in enumerate(user_ids)
        ]

    def start(self, gateways: int) -> None:
        self.ports = [free_port() for _ in range(gateways)]
        for name, port in zip(self.gateway_names(), self.ports, strict=True):
            self.procs.start(
                name,
                [sys.executable, "-m", "townhall", "serve", "--modules", self.modules],
                self.env(port),
            )
        for name in self.gateway_names():
            self.procs.wait_for_log(name, "Townhall is up")

    def tokens(self, count: int) -> list[str]:
        return [self._tokens[n % len(self._tokens)] for n in range(count)]

    def room(self, size: int) -> str:
        import httpx

        answer = httpx.post(
            f"http://127.0.0.1:{self.ports[0]}/api/v1/chat/rooms",
            headers={"Authorization": f"Bearer {self.owner_token}"},
            json={"name": f"bench {size}", "members": self.user_ids[1:size]},
            timeout=60,
        )
        if answer.status_code != 201:
            raise SystemExit(f"POST /chat/rooms answered {answer.status_code}: {answer.text}")
        return str(answer.json()["id"])

    def cleanup(self) -> None:
        cleanup("Redis keys", lambda: delete_redis_keys(self.prefix))
        if self.created:
            cleanup(
                f"database {self.database}",
                lambda: run_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'),
            )


def delete_redis_keys(*prefixes: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                deleted += client.delete(*keys[start : start + 500])
    finally:
        client.close()
    return deleted


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout:.0f} s")


# --- what is measured --------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    measure: str
    value: str
    note: str = ""


@dataclass
class Flow:
    """One fan-out run."""

    deliveries: int = 0
    seconds: float = 0.0
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    expected: int = 0
    notes: str = ""
    gateway_cpu: float = 0.0  # CPU seconds of both gateways over the run and its drain

    @property
    def per_cpu_second(self) -> float:
        """Deliveries per gateway CPU-second: what one gateway process would deliver with a
        core of its own, at this cost (the machine is shared, so its share of the CPU is not)."""
        return self.deliveries / self.gateway_cpu if self.gateway_cpu else float("nan")

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else float("nan")

    @property
    def message_rate(self) -> float:
        return self.sent / self.seconds if self.seconds else float("nan")


class CpuShares:
    """CPU seconds from creation to `shares()`: each gateway, the load generators, Redis and
    PostgreSQL (by command name, shared with other users), the machine."""

    def __init__(self, system: System, loadgen: LoadGen) -> None:
        self.system, self.loadgen = system, loadgen
        self.gateway_seconds = 0.0  # both gateways' CPU, set by `shares()`
        self.started = time.monotonic()
        self.gateways = [cpu_seconds_of(system.pid(n)) for n in range(len(system.ports))]
        self.services = cpu_by_pid(SERVICES)
        self.machine = machine_cpu_seconds()
        self.loadgen_cpu = [cpu_seconds_of(proc.pid) for proc in loadgen.procs]

    def shares(self) -> str:
        seconds = time.monotonic() - self.started
        gateways = [
            cpu_seconds_of(self.system.pid(n)) - before for n, before in enumerate(self.gateways)
        ]
        loadgen = sum(
            cpu_seconds_of(proc.pid) - before
            for proc, before in zip(self.loadgen.procs, self.loadgen_cpu, strict=True)
        )
        services = services_spent(self.services)
        machine = machine_cpu_seconds() - self.machine
        parts = [f"gw{n + 1} {v / seconds:.0%}" for n, v in enumerate(gateways)]
        parts.append(f"loadgen {loadgen / seconds:.0%}")
        parts += [f"{name} {v / seconds:.0%}" for name, v in services.items()]
        self.gateway_seconds = sum(gateways)
        ours = sum(gateways) + loadgen
        parts.append(
            f"machine {machine / seconds:.0%} of {os.cpu_count() * 100}% "
            f"(not gateways/loadgen: {(machine - ours) / seconds:.0%})"
        )
        return "CPU " + ", ".join(parts)


def cpu_by_pid(commands: tuple[str, ...]) -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU seconds) of every live process of these command names."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name in commands:
            fields = text.rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            found[int(stat.parent.name)] = (name, seconds)
    return found


def services_spent(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per command since `before`: processes that ended meanwhile are left out
    (their last counts are gone), ones that started count whole."""
    spent = dict.fromkeys(SERVICES, 0.0)
    for pid, (name, seconds) in cpu_by_pid(SERVICES).items():
        spent[name] += seconds - before.get(pid, (name, 0.0))[1]
    return spent


def spread(count: int, workers: int) -> list[list[int]]:
    """Client indexes per load generator process: pairs (one per gateway) dealt in turn, so
    every process holds members of both gateways."""
    out: list[list[int]] = [[] for _ in range(workers)]
    for index in range(count):
        out[(index // 2) % workers].append(index)
    return out


def idle_phase(system: System, loadgen: LoadGen, args: Any) -> list[Row]:
    system.start(1)
    pid, port = system.pid(0), system.ports[0]
    tokens = system.tokens(args.idle)
    groups = [[] for _ in range(len(loadgen))]  # type: list[list[int]]
    for index in range(args.idle):
        groups[index % len(loadgen)].append(index)
    base = args.idle_base

    def connect(indexes: list[list[int]]) -> tuple[int, int, float, list[str]]:
        answers = loadgen.each(
            [
                {"op": "connect", "dialect": system.dialect, "parallel": args.parallel,
                 "clients": [[i, port, tokens[i], None] for i in mine]}
                for mine in indexes
            ]
        )  # fmt: skip
        failures = [f for a in answers for f in a["failures"]]
        return (
            sum(a["connected"] for a in answers),
            sum(a["failed"] for a in answers),
            max(a["seconds"] for a in answers),
            failures,
        )

    connect([[i for i in mine if i < base] for mine in groups])
    time.sleep(2.0)
    rss_base = rss_kib(pid)
    connected, failed, seconds, failures = connect(
        [[i for i in mine if i >= base] for mine in groups]
    )
    time.sleep(3.0)
    status = loadgen.all({"op": "status"})
    open_now = sum(s["open"] for s in status)
    rss_all = rss_kib(pid)
    per = (rss_all - rss_base) / max(1, open_now - base)
    cpu_before, started = cpu_seconds_of(pid), time.monotonic()
    time.sleep(args.idle_seconds)
    idle_cpu = (cpu_seconds_of(pid) - cpu_before) / (time.monotonic() - started)
    status = loadgen.all({"op": "status"})
    still = sum(s["open"] for s in status)
    closes = [c for s in status for c in s["closes"]]
    loadgen.all({"op": "close"})
    system.stop()
    note = f"{failed} failed" + (f" ({failures[0]})" if failures else "")
    if closes:
        note += f"; closed by the server: {closes[:2]}"
    return [
        Row(system.name, f"idle connections held, one gateway (of {args.idle:,})",
            f"{still:,}", f"{connected + base:,} opened in {seconds:.1f} s; {note}"),
        Row(system.name, "memory per idle connection",
            f"{per:.1f} KiB",
            f"VmRSS {rss_base / 1024:.0f} MiB with {base} -> {rss_all / 1024:.0f} MiB with "
            f"{open_now:,}"),
        Row(system.name, "gateway CPU with them idle", f"{idle_cpu:.1%}",
            f"over {args.idle_seconds:g} s (heartbeats)"),
    ]  # fmt: skip


def flow(
    system: System,
    loadgen: LoadGen,
    args: Any,
    room: str,
    size: int,
    senders: list[int],
    mode: str,
    rate: float = 0.0,
) -> tuple[Flow, str]:
    start_ns = time.time_ns() + int(1e9)
    mine = spread(size, len(loadgen))
    commands = []
    for worker_indexes in mine:
        own_senders = [i for i in senders if i in set(worker_indexes)]
        commands.append(
            {
                "op": "run",
                "room": room,
                "mode": mode,
                "senders": own_senders,
                "window": args.window,
                "rate": rate / len(senders) if rate else 0.0,
                "total_senders": len(senders),
                "sender_offset": senders.index(own_senders[0]) if own_senders else 0,
                "start_ns": start_ns,
                "warmup": args.warmup,
                "seconds": args.seconds,
                "drain": 30.0,
            }
        )
    cpu = CpuShares(system, loadgen)
    answers = loadgen.each(commands, timeout=args.seconds + args.warmup + 120)
    shares = cpu.shares()
    result = Flow(seconds=args.seconds, gateway_cpu=cpu.gateway_seconds)
    latencies = array("q")
    for answer in answers:
        chunk = array("q")
        chunk.frombytes(answer["latencies"])
        latencies.extend(chunk)
        result.sent += answer["sent_in_window"]
    result.deliveries = len(latencies)
    result.expected = result.sent * size
    result.latencies_ms = [value / 1e6 for value in latencies]
    errors = [e for a in answers for e in a["errors"]]
    closes = [c for a in answers for c in a["closes"]]
    lost = sum(a["lost"] for a in answers)
    missing = result.expected - result.deliveries
    notes = [f"{result.message_rate:,.0f} msg/s sent"]
    if missing:
        notes.append(f"{missing:,} of {result.expected:,} deliveries missing")
    if lost:
        notes.append(f"{lost} connections lost {closes[:2]}")
    if errors:
        notes.append(f"errors: {errors[:2]}")
    result.notes = "; ".join(notes)
    return result, shares


def fanout_phase(system: System, loadgen: LoadGen, args: Any) -> tuple[list[Row], dict]:
    rows: list[Row] = []
    summary: dict[str, Any] = {}
    system.start(2)
    try:
        for size in args.rooms:
            room = system.room(size)
            tokens = system.tokens(size)
            mine = spread(size, len(loadgen))
            # All connect first, then all join: presence of a member coming online reaches only
            # members already in the room, so this keeps the set-up free of a presence storm.
            answers = loadgen.each(
                [
                    {"op": "connect", "dialect": system.dialect, "parallel": args.parallel,
                     "clients": [[i, system.ports[i % 2], tokens[i], None] for i in indexes]}
                    for indexes in mine
                ]
            )  # fmt: skip
            failed = sum(a["failed"] for a in answers)
            if failed:
                raise SystemExit(f"{failed} of {size} members did not connect: "
                                 f"{[f for a in answers for f in a['failures']][:3]}")  # fmt: skip
            loadgen.all({"op": "join", "room": room})
            senders = [i for i in range(min(size, args.senders))]
            time.sleep(1.0)
            label = f"{size:,}-member room"
            spies = None
            if args.profile and isinstance(system, Townhall) and size == max(args.rooms):
                spies = GatewaySpy(system, f"{size}")
            saturated, shares = flow(system, loadgen, args, room, size, senders, "closed")
            if spies is not None:
                spies.stop()
                summary["profile"] = spies
            rows.append(
                Row(system.name, f"{label}: deliveries/s, saturating",
                    f"{saturated.rate:,.0f}/s",
                    f"{saturated.rate / 2:,.0f}/s per gateway; "
                    f"{saturated.per_cpu_second:,.0f} per gateway CPU-second; p50 / p99 "
                    f"{percentile(saturated.latencies_ms, 50):.1f} / "
                    f"{percentile(saturated.latencies_ms, 99):.1f} ms; "
                    f"{len(senders)} senders x window {args.window}; {saturated.notes}; {shares}")
            )  # fmt: skip
            half_rate = saturated.message_rate / 2
            if half_rate > 0:
                half, shares = flow(system, loadgen, args, room, size, senders, "open", half_rate)
                rows.append(
                    Row(system.name, f"{label}: p50 / p99 at half ({half.rate:,.0f} deliv/s)",
                        f"{percentile(half.latencies_ms, 50):.1f} / "
                        f"{percentile(half.latencies_ms, 99):.1f} ms",
                        f"{half_rate:,.0f} msg/s due, open loop; p99.9 "
                        f"{percentile(half.latencies_ms, 99.9):.1f} ms; {half.notes}; {shares}")
                )  # fmt: skip
                summary[size] = (saturated, half)
            loadgen.all({"op": "close", "room": room})
            time.sleep(1.0)
    finally:
        system.stop()
    return rows, summary


class GatewaySpy:
    """py-spy on gateway 1 for one run (`bench/spy.py`)."""

    def __init__(self, system: System, label: str) -> None:
        holder = type("Holder", (), {})()
        holder.running = {"gw1": system.procs.running[system.gateway_names()[0]]}
        holder.logs = system.procs.logs
        self.spies = Spies(holder, f"chat{label}")
        self.label = label

    def stop(self) -> None:
        self.spies.stop()

    def report(self) -> None:
        path = self.spies.outputs["gw1"]
        stacks = read_spy(path) if path.exists() else {}
        total = sum(stacks.values())
        print(
            f"\nWhere Townhall gateway 1's CPU goes, {self.label}-member room, saturating "
            f"(py-spy {Spies.RATE}/s, {total / Spies.RATE:.1f} CPU s sampled; {path})"
        )
        if not total:
            print("  no samples")
            return
        layers: dict[str, int] = {}
        for frames, count in stacks.items():
            layer = next((x for x in map(layer_of, reversed(frames)) if x), "other")
            layers[layer] = layers.get(layer, 0) + count
        ranked = sorted(layers.items(), key=lambda kv: -kv[1])
        print("  by layer (innermost known frame): "
              + ", ".join(f"{k} {v / total:.0%}" for k, v in ranked))  # fmt: skip
        print("  inclusive, Townhall functions:")
        for function, share in inclusive(stacks, "townhall/", 15):
            print(f"    {share:5.0%}  {function}")
        print("  own time, top functions:")
        for function, share in own(stacks, 15):
            print(f"    {share:5.0%}  {function}")


LAYERS = (
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("redis/", "redis client"),
    ("websockets/", "websockets"),
    ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette"),
    ("fastapi/", "fastapi"),
    ("pydantic", "pydantic"),
    ("json/", "json"),
    ("orjson", "json"),
    ("structlog/", "logging"),
    ("logging/", "logging"),
    ("asyncio/runners.py", "event loop (uvloop, native)"),
    ("asyncio/", "asyncio"),
    ("townhall/", "Townhall"),
)


def layer_of(frame: str) -> str | None:
    return next((layer for marker, layer in LAYERS if marker in frame), None)


def dump_gateways(system: System) -> None:
    """py-spy dump of every gateway: where each is stuck."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    for name in system.gateway_names():
        proc = system.procs.running.get(name)
        if proc is None or proc.poll() is not None:
            continue
        done = subprocess.run(
            [spy, "dump", "--pid", str(proc.pid)], capture_output=True, text=True, timeout=60
        )
        print(f"\npy-spy dump of {name}:\n{done.stdout[-4000:]}{done.stderr[-1000:]}")


# --- main --------------------------------------------------------------------------------------


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}\n")
    header = f"{'system':<16} {'measure':<52} {'value':>18}  note"
    print(header)
    print("-" * (len(header) + 40))
    for row in rows:
        print(f"{row.system:<16} {row.measure:<52} {row.value:>18}  {row.note}")


def side_by_side(results: dict[str, dict], args: Any) -> None:
    names = list(results)
    if not names:
        return
    print("\nside by side")
    print(f"{'measure':<44}" + "".join(f"{name:>18}" for name in names))
    rows = [
        ("idle connections held", "held", "{:,}"),
        ("KiB per idle connection", "per", "{:.1f}"),
        ("gateway CPU, idle", "idle_cpu", "{:.1%}"),
    ]
    for label, key, form in rows:
        print(f"{label:<44}" + "".join(
            f"{form.format(results[n][key]) if key in results[n] else '-':>18}" for n in names
        ))  # fmt: skip
    for size in args.rooms:
        lines: dict[str, list[str]] = {
            f"{size:,} room: deliveries/s per gateway": [],
            f"{size:,} room: deliveries per gateway CPU-s": [],
            f"{size:,} room: p50 / p99 ms at half rate": [],
        }
        for name in names:
            pair = results[name].get(size)
            values = ["-", "-", "-"]
            if pair is not None:
                saturated, half = pair
                values = [
                    f"{saturated.rate / 2:,.0f}",
                    f"{saturated.per_cpu_second:,.0f}",
                    f"{percentile(half.latencies_ms, 50):.1f} / "
                    f"{percentile(half.latencies_ms, 99):.1f}",
                ]
            for column, value in zip(lines.values(), values, strict=True):
                column.append(value)
        for label, values in lines.items():
            print(f"{label:<44}" + "".join(f"{v:>18}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 idle, rooms 10,100, 3 s")
    parser.add_argument("--systems", default="townhall,socketio")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections, phase a")
    parser.add_argument("--idle-base", type=int, default=200, help="connections of the baseline")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--rooms", default="10,100,1000", help="room sizes, phase b")
    parser.add_argument("--senders", type=int, default=10, help="senders per room")
    parser.add_argument("--window", type=int, default=4, help="messages out per sender")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--loadgen", type=int, default=2, help="load generator processes")
    parser.add_argument("--parallel", type=int, default=200, help="connects in flight, each")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--townhall-modules", default="chat")
    parser.add_argument("--profile", action="store_true", help="py-spy Townhall's gateway 1")
    args = parser.parse_args()
    if args.quick:
        args.idle, args.seconds, args.warmup = min(args.idle, 1000), 3.0, 1.0
        args.rooms = ",".join(r for r in args.rooms.split(",") if int(r) <= 100) or "10"
    args.rooms = [int(r) for r in args.rooms.split(",")]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]

    chat_client.raise_fd_limit()  # the gateways inherit it
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start; fd limit "
          f"{chat_client.resource.getrlimit(chat_client.resource.RLIMIT_NOFILE)[0]:,}",
          flush=True)  # fmt: skip
    run_id = uuid.uuid4().hex[:8]
    logs = Path(tempfile.mkdtemp(prefix="townhall-chatbench-"))
    procs = Processes(logs)
    loadgen = LoadGen(args.loadgen)
    made: list[System] = []
    rows: list[Row] = []
    results: dict[str, dict] = {}
    profile = None
    try:
        with terminated_on_signal():
            for name in systems:
                system: System
                if name == "townhall":
                    townhall = Townhall(procs, run_id, args.townhall_modules)
                    made.append(townhall)
                    townhall.prepare(max([*args.rooms, min(args.idle, 1000)]))
                    system = townhall
                else:
                    system = SocketIO(procs, run_id)
                    made.append(system)
                figures: dict[str, Any] = {}
                results[system.name] = figures
                try:
                    if not args.skip_idle:
                        print(f"{system.name}: {args.idle:,} idle connections ...", flush=True)
                        idle = idle_phase(system, loadgen, args)
                        rows += idle
                        figures["held"] = int(idle[0].value.replace(",", ""))
                        figures["per"] = float(idle[1].value.split()[0])
                        figures["idle_cpu"] = float(idle[2].value.rstrip("%")) / 100
                    if not args.skip_fanout:
                        print(f"{system.name}: rooms of {args.rooms} ...", flush=True)
                        fanout, summary = fanout_phase(system, loadgen, args)
                        rows += fanout
                        profile = summary.pop("profile", profile)
                        figures.update(summary)
                except (Exception, SystemExit) as exc:
                    if isinstance(exc, SystemExit) and "stopped by signal" in str(exc):
                        raise
                    print(f"{system.name} failed: {exc}", file=sys.stderr, flush=True)
                    dump_gateways(system)
                    rows.append(Row(system.name, "failed", "", str(exc)[:300]))
                    loadgen.all({"op": "close"})
                    system.stop()
    finally:
        cleanup("load generators", loadgen.stop)
        cleanup("processes", procs.stop_all)
        for system in made:
            system.cleanup()
        print(f"(process logs in {logs})", file=sys.stderr)
    print_table(
        f"Chat gateways, {os.cpu_count()} cores shared by the gateways, Redis, PostgreSQL and "
        f"{args.loadgen} load generator processes (load {os.getloadavg()[0]:.1f} at the end); "
        f"{args.seconds:g} s measured per run; targets: 10,000 idle per gateway at < 50 KiB, "
        ">= 50,000 deliveries/s per gateway in the 1,000 room, p99 < 50 ms at half that rate",
        rows,
    )
    side_by_side(results, args)
    if profile is not None:
        profile.report()


if __name__ == "__main__":
    main()
