"""Bus throughput and latency per adapter, next to the raw client doing the same work.

    python bench/bus.py            # 100,000 messages of 1 KiB per run (several minutes)
    python bench/bus.py --quick    # a smoke run
    python bench/bus.py --adapters redis,nats

Columns: end-to-end msg/s (publish -> handler -> ack, prefetch 100) with one and two consumer
processes, the raw client's msg/s (same publish/consume/ack loop without the bus), and p50/p99
publish-to-handle latency while publishing at half the one-process rate. Never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from townhall.platform.messaging import Envelope, connect

URLS = {
    "memory": "memory://",
    "redis": os.environ.get("TOWNHALL_TEST_REDIS", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("TOWNHALL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("TOWNHALL_TEST_NATS", "nats://127.0.0.1:4222"),
}
PAYLOAD = "x" * 900  # with the envelope's fields, about 1 KiB on the wire
CONCURRENCY = 50


def with_prefix(url: str, prefix: str) -> str:
    tuning = "partitions=8&lease_ttl=2&queue_expires=600"
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}&{tuning}"


async def publish_all(bus, count: int) -> None:
    async def one(n: int) -> None:
        await bus.publish("bench", Envelope(type="bench.Ping", key=f"k{n % 64}", payload=PAYLOAD))

    for start in range(0, count, CONCURRENCY):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + CONCURRENCY))))


async def consume_forever(url: str) -> None:
    """Child process: consume, print a tick every 100 messages."""
    bus = await connect(url)
    handled = 0

    async def handle(env: Envelope) -> None:
        nonlocal handled
        handled += 1
        if handled % 100 == 0:
            print("tick", flush=True)

    await bus.subscribe("bench", "bench", handle, prefetch=100)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def end_to_end(url: str, count: int, processes: int) -> float:
    bus = await connect(url)
    await bus.transport.ensure_group("bench", "bench")
    if url.startswith("memory://"):
        handled = 0
        done = asyncio.Event()

        async def handle(env: Envelope) -> None:
            nonlocal handled
            handled += 1
            if handled >= count:
                done.set()

        subs = [
            await bus.subscribe("bench", "bench", handle, prefetch=100) for _ in range(processes)
        ]
        started = time.perf_counter()
        await publish_all(bus, count)
        await done.wait()
        elapsed = time.perf_counter() - started
        for sub in subs:
            await sub.stop()
        await bus.close()
        return count / elapsed
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--consume", url, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        await child.stdout.readline()  # ready
    await asyncio.sleep(bus.transport.options.lease_ttl if processes > 1 else 0.5)
    ticks = 0
    all_ticked = asyncio.Event()

    async def read(child) -> None:
        nonlocal ticks
        while await child.stdout.readline():
            ticks += 1
            # Each process ticks per 100 of its own: up to 99 per process go unreported.
            if ticks * 100 >= count - 99 * processes:
                all_ticked.set()

    readers = [asyncio.create_task(read(child)) for child in children]
    started = time.perf_counter()
    await publish_all(bus, count)
    await all_ticked.wait()
    elapsed = time.perf_counter() - started
    for child in children:
        child.kill()
        await child.wait()
    for task in readers:
        task.cancel()
    await bus.transport.delete_everything()
    await bus.close()
    return count / elapsed


async def latency(url: str, rate: float, seconds: float) -> tuple[float, float]:
    bus = await connect(url)
    samples: list[float] = []

    async def handle(env: Envelope) -> None:
        samples.append(time.time() - float(env.headers["sent"]))

    sub = await bus.subscribe("bench", "latency", handle, prefetch=100)
    await asyncio.sleep(0.5)
    total = int(rate * seconds)
    started = time.perf_counter()
    pending = set()
    for n in range(total):
        due = started + n / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        env = Envelope(type="bench.Ping", key=f"k{n % 64}", payload=PAYLOAD)
        task = asyncio.create_task(bus.publish("bench", env.with_headers(sent=repr(time.time()))))
        pending.add(task)
        task.add_done_callback(pending.discard)
    deadline = time.monotonic() + 30
    while len(samples) < total and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await sub.stop()
    if hasattr(bus.transport, "delete_everything"):
        await bus.transport.delete_everything()
    await bus.close()
    for task in list(pending):
        task.cancel()
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else float("nan"),
    )


async def raw(adapter: str, count: int, prefix: str) -> float:
    body = Envelope(type="bench.Ping", key="k", payload=PAYLOAD).to_bytes()
    if adapter == "memory":
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100)

        async def consume() -> None:
            for _ in range(count):
                Envelope.from_bytes(await queue.get())

        started = time.perf_counter()
        consumer = asyncio.create_task(consume())
        for _ in range(count):
            await queue.put(body)
        await consumer
        return count / (time.perf_counter() - started)
    if adapter == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(URLS["redis"])
        stream = f"{prefix}:raw"
        await client.xgroup_create(stream, "g", id="$", mkstream=True)

        async def consume_redis() -> None:
            done = 0
            while done < count:
                reply = await client.xreadgroup("g", "c", {stream: ">"}, count=100, block=1000)
                for _, entries in reply:
                    for entry_id, _fields in entries:
                        await client.xack(stream, "g", entry_id)
                        done += 1

        started = time.perf_counter()
        consumer = asyncio.create_task(consume_redis())
        for start in range(0, count, CONCURRENCY):
            n = min(CONCURRENCY, count - start)
            await asyncio.gather(*(client.xadd(stream, {"b": body}) for _ in range(n)))
        await consumer
        rate = count / (time.perf_counter() - started)
        await client.delete(stream)
        await client.aclose()
        return rate
    if adapter == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect_robust(URLS["rabbitmq"])
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=100)
        queue = await channel.declare_queue(
            f"{prefix}.raw", durable=True, arguments={"x-queue-type": "quorum"}
        )
        done_event = asyncio.Event()
        done = 0

        async def on_message(message) -> None:
            nonlocal done
            await message.ack()
            done += 1
            if done >= count:
                done_event.set()

        await queue.consume(on_message)
        started = time.perf_counter()
        exchange = channel.default_exchange
        for start in range(0, count, CONCURRENCY):
            n = min(CONCURRENCY, count - start)
            await asyncio.gather(
                *(
                    exchange.publish(aio_pika.Message(body), routing_key=queue.name)
                    for _ in range(n)
                )
            )
        await done_event.wait()
        rate = count / (time.perf_counter() - started)
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
        return rate
    import nats

    nc = await nats.connect(URLS["nats"])
    js = nc.jetstream()
    await js.add_stream(name=f"{prefix}_raw", subjects=[f"{prefix}.raw"])
    psub = await js.pull_subscribe(f"{prefix}.raw", durable="raw")

    async def consume_nats() -> None:
        done = 0
        while done < count:
            try:
                msgs = await psub.fetch(100, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
                done += 1

    started = time.perf_counter()
    consumer = asyncio.create_task(consume_nats())
    for start in range(0, count, CONCURRENCY):
        n = min(CONCURRENCY, count - start)
        await asyncio.gather(*(js.publish(f"{prefix}.raw", body) for _ in range(n)))
    await consumer
    rate = count / (time.perf_counter() - started)
    await js.delete_stream(f"{prefix}_raw")
    await nc.close()
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int)
    parser.add_argument("--adapters", default=",".join(URLS))
    parser.add_argument("--consume")
    args = parser.parse_args()
    if args.consume:
        await consume_forever(args.consume)
        return
    count = args.count or (5_000 if args.quick else 100_000)
    seconds = 2.0 if args.quick else 5.0
    print(f"{count:,} messages of 1 KiB, prefetch 100, {os.cpu_count()} cores")
    header = f"{'adapter':<10}{'1 proc msg/s':>14}{'2 procs msg/s':>15}{'raw msg/s':>12}"
    header += f"{'bus/raw':>9}{'p50 ms':>9}{'p99 ms':>9}{'@ msg/s':>9}"
    print(header)
    print("-" * len(header))
    for adapter in args.adapters.split(","):
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        url = with_prefix(URLS[adapter], prefix)
        try:
            one = await end_to_end(with_prefix(URLS[adapter], prefix + "a"), count, 1)
            two = await end_to_end(with_prefix(URLS[adapter], prefix + "b"), count, 2)
            baseline = await raw(adapter, count, prefix + "r")
            rate = one / 2
            p50, p99 = await latency(url, rate, seconds)
        except Exception as exc:  # a broker that is down: say so, keep going
            print(f"{adapter:<10} failed: {exc!r}")
            continue
        print(
            f"{adapter:<10}{one:>14,.0f}{two:>15,.0f}{baseline:>12,.0f}"
            f"{one / baseline:>9.2f}{p50:>9.1f}{p99:>9.1f}{rate:>9,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
