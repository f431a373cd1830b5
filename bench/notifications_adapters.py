"""Adapter-level throughput of the notification senders: emails/s through `SmtpEmailSender`
into a real SMTP server (the built-in aiosmtpd sink, run in a separate process so the two do
not share one event loop), by connection pool size; and the token bucket's pacing accuracy.

    .venv/bin/python bench/notifications_adapters.py [--quick]

Prints a table; asserts nothing about time. The end-to-end benchmark (POST -> worker ->
SMTP, against Celery) is bench/notifications.py, once the module is wired.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from typing import Any

from townhall.notifications.adapters.smtp import SmtpEmailSender
from townhall.notifications.adapters.smtp_sink import SmtpSink
from townhall.notifications.domain import Delivered, EmailMessage
from townhall.notifications.providers import TokenBucket


def run_sink(port_queue: Any, stop: Any) -> None:
    async def main() -> None:
        sink = SmtpSink(limit=10)
        await sink.start()
        port_queue.put(sink.port)
        await asyncio.to_thread(stop.wait)
        await sink.stop()

    asyncio.run(main())


async def emails_per_second(url: str, pool_size: int, count: int, concurrency: int) -> float:
    sender = SmtpEmailSender(url, "bench@townhall.test", pool_size=pool_size)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    delivered = 0

    async def worker() -> None:
        nonlocal delivered
        while not queue.empty():
            index = queue.get_nowait()
            message = EmailMessage(uuid.uuid4(), f"user{index}@example.org", "Bench", "Hello")
            if isinstance(await sender.send(message), Delivered):
                delivered += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await sender.aclose()
    if delivered != count:
        print(f"  warning: {count - delivered} of {count} not delivered")
    return count / elapsed


async def bucket_pacing(rate: float, count: int) -> float:
    bucket = TokenBucket(rate=rate, burst=1)
    started = time.perf_counter()
    await asyncio.gather(*(bucket.acquire() for _ in range(count)))
    return (count - 1) / (time.perf_counter() - started)


async def main(quick: bool) -> None:
    count = 300 if quick else 3000
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    stop = context.Event()
    process = context.Process(target=run_sink, args=(ports, stop))
    process.start()
    try:
        url = f"smtp://127.0.0.1:{ports.get(timeout=30)}"
        print(f"SmtpEmailSender -> aiosmtpd sink (separate process), {count} emails each")
        print(f"{'pool size':>10} {'concurrency':>12} {'emails/s':>10}")
        for pool_size in (1, 4, 8):
            rate = await emails_per_second(url, pool_size, count, concurrency=pool_size * 2)
            print(f"{pool_size:>10} {pool_size * 2:>12} {rate:>10.0f}")
    finally:
        stop.set()
        process.join(timeout=10)
    print()
    print("TokenBucket pacing (burst 1)")
    print(f"{'target/s':>10} {'measured/s':>11}")
    for target in (50.0, 200.0) if quick else (50.0, 200.0, 1000.0):
        measured = await bucket_pacing(target, int(target))
        print(f"{target:>10.0f} {measured:>11.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    asyncio.run(main(parser.parse_args().quick))
