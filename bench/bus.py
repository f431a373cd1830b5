"""Bus throughput and latency per adapter, next to the raw client doing the same work.

    python bench/bus.py                     # 100,000 messages of 1 KiB per run (a few minutes)
    python bench/bus.py --quick             # 5,000 messages: a smoke run
    python bench/bus.py --adapters redis,nats --count 20000

Per adapter, in one run:
- `1 proc` / `2 procs`: end-to-end msg/s for N messages (publish -> handler -> ack, prefetch
  100). The publisher is this process; the consumers are one or two child processes running
  `bus.subscribe` (on memory://, which cannot span processes, they are one or two members in
  this process). The clock runs from the first publish to the last handled message.
- `raw`: the official client doing the same work without the bus, with the same publisher
  concurrency and a consumer child process: redis-py XADD / XREADGROUP COUNT 100 / one XACK
  per batch; aio-pika persistent publish with confirms / consume with QoS 100 on a quorum queue
  / ack; nats-py JetStream publish / pull fetch(100) / ack. Raw consumers decode every
  envelope like the bus does. On memory:// the raw figure is an asyncio.Queue(100) handoff.
- `p50`/`p99`: publish-to-handle latency at half the measured 1-proc rate, from a paced,
  bounded publisher (at most PACED_WORKERS publishes in flight) to one consumer child.

Envelopes are built before the clock starts (the bus is measured, not the constructor).
Every broker resource lives under a fresh prefix and is deleted at the end of its phase, also
on errors and Ctrl-C; RabbitMQ queues carry x-expires in any case. Never asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from townhall.platform.messaging import Envelope, connect
from townhall.platform.messaging.transport import token

URLS = {
    "memory": "memory://",
    "redis": os.environ.get("TOWNHALL_TEST_REDIS", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("TOWNHALL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("TOWNHALL_TEST_NATS", "nats://127.0.0.1:4222"),
}
PAYLOAD = "x" * 900  # with the envelope's fields, about 1 KiB on the wire
PARTITIONS = 8
LEASE_TTL = 2.0
TUNING = f"partitions={PARTITIONS}&lease_ttl={LEASE_TTL}&queue_expires=60"
PREFETCH = 100
PUBLISHERS = 32  # concurrent publishes on a broker (each waits for the broker's ack)
PACED_WORKERS = 16  # the latency publisher's bound on publishes in flight
TOPIC, GROUP = "bench", "bench"
REPORT_EVERY = 0.05  # how often a child reports its count


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop measuring, delete what this run created, exit."""


class Signals:
    """Our own SIGINT/SIGTERM handling: a flag every loop checks (client libraries may
    swallow a task's cancellation), a cancel to wake the run, and a hard exit on the third."""

    count = 0

    @classmethod
    def install(cls) -> None:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def on_signal() -> None:
            cls.count += 1
            if cls.count >= 3:
                os._exit(130)  # children exit on their stdin's EOF; x-expires clears queues
            print("interrupted: cleaning up (a third signal abandons it)", flush=True)
            if cls.count == 1:
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)

    @classmethod
    def check(cls) -> None:
        if cls.count:
            raise Interrupted


def bus_url(adapter: str, prefix: str) -> str:
    base = URLS[adapter]
    return f"{base}{'&' if '?' in base else '?'}prefix={prefix}&{TUNING}"


def envelopes(count: int) -> list[Envelope]:
    return [Envelope(type="bench.Ping", key=f"k{n % 64}", payload=PAYLOAD) for n in range(count)]


async def publish_all(
    publish: Callable[[Envelope], Awaitable[Any]], batch: Sequence[Envelope], workers: int
) -> None:
    """`workers` coroutines publish `batch` one message at a time each (no task per message)."""
    items = iter(batch)

    async def worker() -> None:
        sent = 0
        for envelope in items:
            Signals.check()
            await publish(envelope)
            sent += 1
            if sent % 100 == 0:
                await asyncio.sleep(0)  # an in-process publish never yields: let consumers run

    await asyncio.gather(*(worker() for _ in range(workers)))


# ---------------------------------------------------------------------------------------------
# Child processes: consumers that print "ready", then "n <handled>" as it grows, and on stdin
# EOF a last line ("n <handled>", or "lat <json samples summary>") before they exit.


class Reporter:
    def __init__(self) -> None:
        self.handled = 0
        self.samples: list[float] = []

    async def run(self, stopped: asyncio.Event) -> None:
        shown = -1
        while not stopped.is_set():
            if self.handled != shown:
                shown = self.handled
                print(f"n {shown}", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), REPORT_EVERY)
        print(f"n {self.handled}", flush=True)
        if self.samples:
            ordered = sorted(self.samples)
            summary = {
                "p50": statistics.median(ordered),
                "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
                "n": len(ordered),
            }
            print(f"lat {json.dumps(summary)}", flush=True)


async def child_main(mode: str, adapter: str, name: str) -> None:
    reporter = Reporter()
    stopped = asyncio.Event()
    stop_consuming = await (child_bus if mode in ("bus", "latency") else child_raw)(
        mode, adapter, name, reporter
    )
    print("ready", flush=True)
    report = asyncio.create_task(reporter.run(stopped))
    await asyncio.to_thread(sys.stdin.read)  # the parent closes our stdin when it is done
    await stop_consuming()
    stopped.set()
    await report


async def child_bus(
    mode: str, adapter: str, prefix: str, reporter: Reporter
) -> Callable[[], Awaitable[None]]:
    bus = await connect(bus_url(adapter, prefix))
    latency = mode == "latency"

    async def handle(envelope: Envelope) -> None:
        if latency:
            reporter.samples.append(time.time() - float(envelope.headers["sent"]))
        reporter.handled += 1

    sub = await bus.subscribe(TOPIC, GROUP, handle, prefetch=PREFETCH)

    async def stop() -> None:
        await sub.stop()
        await bus.close()

    return stop


async def child_raw(
    mode: str, adapter: str, name: str, reporter: Reporter
) -> Callable[[], Awaitable[None]]:
    running = True
    if adapter == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(URLS["redis"])

        async def consume_redis() -> None:
            while running:
                reply = await client.xreadgroup(
                    "g", "c", {name: ">"}, count=PREFETCH, block=int(REPORT_EVERY * 1000)
                )
                ids = []
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        Envelope.from_bytes(fields[b"b"])
                        ids.append(entry_id)
                if ids:
                    await client.xack(name, "g", *ids)
                    reporter.handled += len(ids)

        task = asyncio.create_task(consume_redis())

        async def stop_redis() -> None:
            nonlocal running
            running = False
            await task
            await client.aclose()

        return stop_redis
    if adapter == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(URLS["rabbitmq"])
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(name, ensure=False)

        async def on_message(message: Any) -> None:
            Envelope.from_bytes(message.body)
            await message.ack()
            reporter.handled += 1

        await queue.consume(on_message)

        async def stop_rabbit() -> None:
            await connection.close()

        return stop_rabbit
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    nc = await nats.connect(URLS["nats"])
    psub = await nc.jetstream().pull_subscribe_bind("raw", stream=name)

    async def consume_nats() -> None:
        while running:
            try:
                msgs = await psub.fetch(PREFETCH, timeout=REPORT_EVERY * 4)
            except (NatsTimeout, TimeoutError):  # nats-py raises either
                continue
            for msg in msgs:
                Envelope.from_bytes(msg.data)
                await msg.ack()
            reporter.handled += len(msgs)

    task = asyncio.create_task(consume_nats())

    async def stop_nats() -> None:
        nonlocal running
        running = False
        await task
        await nc.close()

    return stop_nats


# ---------------------------------------------------------------------------------------------
# The parent's side of the children.


class Children:
    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.counts: list[int] = []
        self.latency: dict[str, float] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    async def start(self, processes: int, mode: str, adapter: str, name: str) -> None:
        for index in range(processes):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--child",
                mode,
                adapter,
                name,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
            self.counts.append(0)
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if line.strip() != b"ready":
                raise RuntimeError(f"consumer child did not start ({line!r})")
            self.readers.append(asyncio.create_task(self._read(index, proc)))

    async def _read(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            kind, _, value = line.decode().strip().partition(" ")
            if kind == "n":
                self.counts[index] = int(value)
            elif kind == "lat":
                self.latency = json.loads(value)
            self.changed.set()

    @property
    def total(self) -> int:
        return sum(self.counts)

    async def wait_for(self, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while self.total < count:
            Signals.check()
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"consumers stalled at {self.total:,} of {count:,}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def finish(self) -> None:
        """Ask every child to stop (stdin EOF), read its last report; kill what lingers."""
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)


@contextlib.asynccontextmanager
async def children() -> AsyncIterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(kids.finish())


# ---------------------------------------------------------------------------------------------
# Broker resources: a fresh prefix per phase, deleted when the phase ends (also on errors).


@contextlib.asynccontextmanager
async def phase(adapter: str, prefix: str) -> AsyncIterator[str]:
    Signals.check()
    try:
        yield prefix
    finally:
        await asyncio.shield(cleanup(adapter, prefix))


async def cleanup(adapter: str, prefix: str) -> None:
    if adapter == "memory":
        return
    if adapter == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(URLS["rabbitmq"])
        try:
            channel = await connection.channel()
            base = f"{prefix}.{token(TOPIC)}.{token(GROUP)}"
            for suffix in [*map(str, range(PARTITIONS)), "dlq"]:
                await channel.queue_delete(f"{base}.{suffix}")
            await channel.exchange_delete(f"{prefix}.members.{token(TOPIC)}.{token(GROUP)}")
            await channel.exchange_delete(f"{prefix}.bus.{token(TOPIC)}")
            await channel.exchange_delete(f"{prefix}.dlx")
        finally:
            await connection.close()
        return
    bus = await connect(bus_url(adapter, prefix))
    try:
        await bus.transport.delete_everything()  # type: ignore[attr-defined]
    finally:
        await bus.close()


async def amqp_answers(within: float = 5.0) -> bool:
    import aio_pika

    try:
        connection = await asyncio.wait_for(aio_pika.connect(URLS["rabbitmq"]), within)
    except (TimeoutError, OSError, Exception):
        return False
    await connection.close()
    return True


# ---------------------------------------------------------------------------------------------
# The measurements.


def stall_timeout(count: int) -> float:
    return 60 + count / 500


async def end_to_end(adapter: str, prefix: str, batch: list[Envelope], processes: int) -> float:
    count = len(batch)
    if adapter == "memory":
        return await end_to_end_memory(prefix, batch, processes)
    async with phase(adapter, prefix), children() as kids:
        bus = await connect(bus_url(adapter, prefix))
        try:
            await bus.transport.ensure_group(TOPIC, GROUP)
            await kids.start(processes, "bus", adapter, prefix)
            # Let the members share the partitions out (rebalance every lease_ttl / 4).
            await asyncio.sleep(LEASE_TTL if processes > 1 else 0.3)
            started = time.perf_counter()
            await publish_all(lambda e: bus.publish(TOPIC, e), batch, PUBLISHERS)
            await kids.wait_for(count, stall_timeout(count))
            return count / (time.perf_counter() - started)
        finally:
            await bus.close()


async def end_to_end_memory(prefix: str, batch: list[Envelope], members: int) -> float:
    count = len(batch)
    bus = await connect(bus_url("memory", prefix))
    handled = 0
    done = asyncio.Event()

    async def handle(envelope: Envelope) -> None:
        nonlocal handled
        handled += 1
        if handled >= count:
            done.set()

    for _ in range(members):
        await bus.subscribe(TOPIC, GROUP, handle, prefetch=PREFETCH)
    if members > 1:
        await asyncio.sleep(LEASE_TTL)  # as with processes: let the members share partitions
    started = time.perf_counter()
    await publish_all(lambda e: bus.publish(TOPIC, e), batch, 1)
    await asyncio.wait_for(done.wait(), stall_timeout(count))
    elapsed = time.perf_counter() - started
    await bus.close()
    return count / elapsed


async def raw(adapter: str, name: str, batch: list[Envelope]) -> float:
    count = len(batch)
    if adapter == "memory":
        queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=PREFETCH)

        async def consume() -> None:
            for _ in range(count):
                await queue.get()

        started = time.perf_counter()
        consumer = asyncio.create_task(consume())
        await publish_all(queue.put, batch, 1)
        await consumer
        return count / (time.perf_counter() - started)
    async with raw_resources(adapter, name) as publish, children() as kids:
        await kids.start(1, "raw", adapter, name)
        started = time.perf_counter()
        await publish_all(publish, batch, PUBLISHERS)
        await kids.wait_for(count, stall_timeout(count))
        return count / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def raw_resources(
    adapter: str, name: str
) -> AsyncIterator[Callable[[Envelope], Awaitable[Any]]]:
    """Declare the raw client's stream/queue; yield its publish; delete everything after."""
    if adapter == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(URLS["redis"])
        try:
            await client.xgroup_create(name, "g", id="$", mkstream=True)

            async def publish_redis(envelope: Envelope) -> None:
                await client.xadd(name, {"b": envelope.to_bytes()})

            yield publish_redis
        finally:
            await asyncio.shield(client.delete(name))
            await client.aclose()
        return
    if adapter == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(URLS["rabbitmq"])
        try:
            channel = await connection.channel(publisher_confirms=True)
            arguments = {"x-queue-type": "quorum", "x-expires": 60_000}
            await channel.declare_queue(name, durable=True, arguments=arguments)
            exchange = channel.default_exchange

            async def publish_rabbit(envelope: Envelope) -> None:
                message = aio_pika.Message(
                    envelope.to_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                )
                await exchange.publish(message, routing_key=name)

            yield publish_rabbit
        finally:
            with contextlib.suppress(Exception):
                cleaner = await connection.channel()
                await asyncio.shield(cleaner.queue_delete(name))
            await connection.close()
        return
    import nats
    from nats.js import api

    nc = await nats.connect(URLS["nats"])
    js = nc.jetstream()
    try:
        await js.add_stream(name=name, subjects=[f"{name}.raw"], storage=api.StorageType.FILE)
        await js.add_consumer(
            name, durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=-1
        )

        async def publish_nats(envelope: Envelope) -> None:
            await js.publish(f"{name}.raw", envelope.to_bytes(), stream=name)

        yield publish_nats
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(js.delete_stream(name))
        await nc.close()


async def latency(
    adapter: str, prefix: str, rate: float, seconds: float, batch: Sequence[Envelope]
) -> tuple[float, float]:
    """p50/p99 ms from publish to handler while a paced publisher sends `rate` msg/s."""
    total = max(1, int(rate * seconds))
    if adapter == "memory":
        bus = await connect(bus_url(adapter, prefix))
        samples: list[float] = []

        async def handle(envelope: Envelope) -> None:
            samples.append(time.time() - float(envelope.headers["sent"]))

        await bus.subscribe(TOPIC, GROUP, handle, prefetch=PREFETCH)
        try:
            await paced(bus, rate, total, batch)
            deadline = time.monotonic() + 30
            while len(samples) < total and time.monotonic() < deadline:
                Signals.check()
                await asyncio.sleep(0.01)
        finally:
            await bus.close()
        ordered = sorted(samples)
        return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000
    async with phase(adapter, prefix), children() as kids:
        bus = await connect(bus_url(adapter, prefix))
        try:
            await bus.transport.ensure_group(TOPIC, GROUP)
            await kids.start(1, "latency", adapter, prefix)
            await asyncio.sleep(0.3)
            await paced(bus, rate, total, batch)
            await kids.wait_for(total, 30)
        finally:
            await bus.close()
        await kids.finish()
        return kids.latency["p50"] * 1000, kids.latency["p99"] * 1000


async def paced(bus: Any, rate: float, total: int, batch: Sequence[Envelope]) -> None:
    """Publish `total` messages at `rate`, at most PACED_WORKERS in flight. A worker that is
    due within a millisecond publishes at once (sleeping per message would cost more than
    the bus at these rates); the `sent` stamp is taken as it publishes."""
    counter = iter(range(total))
    started = time.perf_counter()

    async def worker() -> None:
        for n in counter:
            Signals.check()
            if (delay := started + n / rate - time.perf_counter()) > 0.001:
                await asyncio.sleep(delay)
            envelope = batch[n % len(batch)]
            await bus.publish(TOPIC, envelope.with_headers(sent=repr(time.time())))

    await asyncio.gather(*(worker() for _ in range(PACED_WORKERS)))


# ---------------------------------------------------------------------------------------------


async def run_adapter(adapter: str, count: int, seconds: float) -> str:
    run = f"bench{uuid.uuid4().hex[:6]}"
    batch = envelopes(count)
    gc.collect()
    gc.freeze()  # the bench's own envelopes are not the collector's business while we measure
    try:
        one = await end_to_end(adapter, run + "a", batch, 1)
        two = await end_to_end(adapter, run + "b", batch, 2)
        if adapter == "rabbitmq" and not await amqp_answers():
            raise RuntimeError("RabbitMQ stopped answering the AMQP handshake within 5 s")
        baseline = await raw(adapter, run + "r", batch)
        rate = one / 2
        p50, p99 = await latency(adapter, run + "l", rate, seconds, batch)
    finally:
        gc.unfreeze()
    return (
        f"{adapter:<10}{one:>12,.0f}{two:>13,.0f}{baseline:>11,.0f}"
        f"{one / baseline:>9.2f}{p50:>9.1f}{p99:>9.1f}{rate:>10,.0f}{os.getloadavg()[0]:>7.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 messages, short latency run")
    parser.add_argument("--count", type=int, help="messages per throughput run")
    parser.add_argument("--adapters", default=",".join(URLS), help="e.g. memory,redis")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        await child_main(*args.child)
        return
    Signals.install()
    count = args.count or (5_000 if args.quick else 100_000)
    seconds = 2.0 if args.quick else 5.0
    print(
        f"{count:,} messages of ~1 KiB, prefetch {PREFETCH}, {PARTITIONS} partitions, "
        f"{PUBLISHERS} concurrent publishes, {os.cpu_count()} cores"
    )
    header = f"{'adapter':<10}{'1 proc/s':>12}{'2 procs/s':>13}{'raw/s':>11}"
    header += f"{'bus/raw':>9}{'p50 ms':>9}{'p99 ms':>9}{'@ msg/s':>10}{'load':>7}"
    print(header)
    print("-" * len(header), flush=True)
    for adapter in args.adapters.split(","):
        if adapter == "rabbitmq" and not await amqp_answers():
            print(f"{adapter:<10}skipped: no AMQP handshake within 5 s", flush=True)
            continue
        try:
            Signals.check()
            print(await run_adapter(adapter, count, seconds), flush=True)
        except (Interrupted, asyncio.CancelledError):
            print("interrupted; this run's broker resources are deleted", flush=True)
            return
        except Exception as exc:  # a broker that is down or stalls: say so, keep going
            print(f"{adapter:<10}failed: {exc!r}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
