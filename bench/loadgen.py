"""A small closed-loop HTTP/1.1 load generator on raw asyncio sockets (keep-alive).

Kept deliberately thin so it costs less per request than the servers it measures, and used
unchanged for every target a benchmark compares.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str, port: int, request: bytes, stop_at: float, record_from: float, result: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        while True:
            started = clock()
            if started >= stop_at:
                break
            writer.write(request)
            status = await _read_response(reader)
            done = clock()
            if started >= record_from:
                result.requests += 1
                result.latencies_ms.append((done - started) * 1000)
                if status >= 400:
                    result.errors += 1
    finally:
        writer.close()


async def run(
    host: str,
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    concurrency: int = 16,
    seconds: float = 5.0,
    warmup: float = 1.0,
) -> Result:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    now = time.perf_counter()
    record_from, stop_at = now + warmup, now + warmup + seconds
    result = Result(0, 0, seconds, [])
    await asyncio.gather(
        *[
            _connection(host, port, request, stop_at, record_from, result)
            for _ in range(concurrency)
        ]
    )
    return result
