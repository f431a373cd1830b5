"""Scan throughput of the uploads scanners on the same 100 MiB: yara-x in process (random bytes,
and text, which gives the rules' atoms more to check) and clamd over INSTREAM (TCP and a unix
socket), streamed in 64 KiB chunks as the storage gives them; then the scan pipeline over a zip
holding the random bytes (the file scanned whole, then its member unpacked and scanned).

    .venv/bin/python bench/uploads_scan.py [--mib 100] [--runs 3] [--clamd tcp://HOST:PORT]

Without `--clamd` it starts a clamd of its own as the tests do (tests/support/clamd.py: a tiny
signature database, so it measures the protocol and clamd's file handling more than a real
database's matching). Prints MB/s (best and median of the runs); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

from townhall.uploads.adapters.clamd import ClamdScanner
from townhall.uploads.adapters.yara import YaraScanner
from townhall.uploads.archives import ArchiveLimits
from townhall.uploads.domain import Status, Verdict
from townhall.uploads.scanning import ScanPipeline

TESTS = Path(__file__).resolve().parents[1] / "tests"  # for the clamd the tests start
CHUNK = 64 * 1024
MiB = 1024 * 1024


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        yield bytes(view[start : start + CHUNK])


def text(size: int) -> bytes:
    line = b"Minutes of the town hall: the <b>park</b> budget, eval of bids, base64 notes.\n"
    return (line * (size // len(line) + 1))[:size]


def stored_zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr("random.bin", data)
    return buffer.getvalue()


async def measure(
    scan: Callable[[], Awaitable[Verdict]], size: int, runs: int
) -> tuple[float, float]:
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        verdict = await scan()
        rates.append(size / MiB / (time.perf_counter() - started))
        assert verdict.status is Status.CLEAN, verdict
    return max(rates), statistics.median(rates)


async def main(mib: int, runs: int, clamd_address: str | None) -> None:
    size = mib * MiB
    random_bytes, text_bytes = os.urandom(size), text(size)
    archive = stored_zip(random_bytes)
    with ExitStack() as stack:
        if clamd_address:
            addresses = [clamd_address]
        else:
            sys.path.insert(0, str(TESTS))
            from support.clamd import running_clamd

            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            own = stack.enter_context(
                running_clamd(directory / "clamd", stream_max_length=f"{2 * mib + 10}M")
            )
            print(f"clamd started in {own.started_in * 1000:.0f} ms (tiny database)")
            addresses = [own.tcp, own.unix]
        yara = YaraScanner()
        limits = ArchiveLimits(max_total_bytes=4 * size)
        cases: list[tuple[str, Callable[[], Awaitable[Verdict]]]] = [
            ("yara-x, random", lambda: yara.scan(chunks(random_bytes))),
            ("yara-x, text", lambda: yara.scan(chunks(text_bytes))),
            (
                "pipeline yara-x, zip of random",
                lambda: ScanPipeline(yara, limits, 600).verdict(chunks(archive), "application/zip"),
            ),
        ]
        for address in addresses:
            clamd = ClamdScanner(address)
            kind = address.split(":", 1)[0]
            cases.append((f"clamd {kind}, random", lambda c=clamd: c.scan(chunks(random_bytes))))
            cases.append((f"clamd {kind}, text", lambda c=clamd: c.scan(chunks(text_bytes))))
        print(f"{mib} MiB in {CHUNK // 1024} KiB chunks, {runs} runs")
        print(f"{'scanner':34} {'best MB/s':>10} {'median MB/s':>12}")
        for name, scan in cases:
            best, median = await measure(scan, size, runs)
            print(f"{name:34} {best:10.0f} {median:12.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clamd", help="an address of a running clamd instead of our own")
    args = parser.parse_args()
    asyncio.run(main(args.mib, args.runs, args.clamd))
