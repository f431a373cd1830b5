"""Throughput of the uploads storages, and the memory a large put takes.

- LocalStorage: a put of 1 GiB in 256 KiB chunks (as fresh `bytes`, as a request body gives
  them), with and without fsync, and the process's peak RSS above what it was before; beside
  it the peer, a `to_thread` a chunk with no batching; then a read back.
- S3Storage on a moto server of the tests' own (tests/support/s3.py, signatures checked): a
  put of 100 MiB (a multipart upload of 8 MiB parts) and a read back. moto is a Python
  server keeping objects in spooled files: it measures our client less than moto itself.

    .venv/bin/python bench/uploads_storage.py [--local-mib 1024] [--s3-mib 100] [--runs 3]

Prints MB/s (1 MB = 10^6 bytes; best and median of the runs, interleaved) and the peak RSS
above the RSS before each put; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path

from townhall.uploads.adapters.local import LocalStorage
from townhall.uploads.adapters.s3 import S3Storage
from townhall.uploads.ports import Area, ObjectStorage

TESTS = Path(__file__).resolve().parents[1] / "tests"  # for the moto server the tests start
CHUNK = 256 * 1024
MiB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class PeakRss:
    """The highest RSS seen, sampled every 5 ms by a thread."""

    def __init__(self) -> None:
        self.before = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return (self.peak - self.before) / MiB


async def body(size: int, template: bytes) -> AsyncIterator[bytes]:
    for _ in range(size // CHUNK):
        yield bytes(template)  # a fresh object, as a request body's chunks are
        await asyncio.sleep(0)


async def drain(chunks: AsyncIterable[bytes]) -> int:
    return sum([len(chunk) async for chunk in chunks])


class PerChunkThread(LocalStorage):
    """The peer: every chunk written by its own `to_thread`, the next one received only
    after (no batching, no overlap)."""

    async def put(self, area: Area, key: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._path(area, key)
        temp = target.parent / f".partial-{uuid.uuid4().hex}"
        size = 0
        with open(temp, "wb") as out:  # noqa: ASYNC230
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
                size += len(chunk)
            if self.fsync:
                await asyncio.to_thread(os.fsync, out.fileno())
        os.replace(temp, target)
        return size


async def timed(action: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    started = time.perf_counter()
    size = await action()
    return time.perf_counter() - started, size


def row(name: str, size: int, rates: list[float], extra: str = "") -> None:
    best, median = max(rates), statistics.median(rates)
    print(f"| {name:<36} | {size / MiB:>5.0f} | {best:>6.0f} | {median:>6.0f} | {extra:<15} |")


async def local(directory: Path, mib: int, template: bytes, runs: int) -> None:
    size = mib * MiB
    variants = {
        "LocalStorage put, fsync": LocalStorage(directory, fsync=True),
        "LocalStorage put, no fsync": LocalStorage(directory, fsync=False),
        "peer: to_thread a chunk, fsync": PerChunkThread(directory, fsync=True),
        "peer: to_thread a chunk, no fsync": PerChunkThread(directory, fsync=False),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    growth: dict[str, float] = dict.fromkeys(variants, 0.0)
    reads: list[float] = []
    for _ in range(runs):  # interleaved, so the disk's state is shared alike
        for name, store in variants.items():
            key = str(uuid.uuid4())
            with PeakRss() as memory:
                seconds, written = await timed(
                    lambda s=store, k=key: s.put(Area.QUARANTINE, k, body(size, template))
                )
            rates[name].append(written / seconds / 1e6)
            growth[name] = max(growth[name], memory.growth)
            if name == "LocalStorage put, no fsync":
                seconds, read = await timed(lambda s=store, k=key: drain(s.get(Area.QUARANTINE, k)))
                reads.append(read / seconds / 1e6)
            await store.delete(key)
    for name in variants:
        row(name, size, rates[name], f"RSS +{growth[name]:.1f} MiB")
    row("LocalStorage get (page cache)", size, reads)


async def s3(directory: Path, mib: int, template: bytes, runs: int) -> None:
    sys.path.insert(0, str(TESTS))
    from support.s3 import running_moto

    size = mib * MiB
    with running_moto(directory / "moto") as server:
        store: ObjectStorage = S3Storage(
            server.endpoint, server.bucket, server.access_key, server.secret_key
        )
        key = str(uuid.uuid4())
        puts, gets, growth = [], [], 0.0
        for _ in range(runs):
            with PeakRss() as memory:
                seconds, written = await timed(
                    lambda: store.put(Area.QUARANTINE, key, body(size, template))
                )
            puts.append(written / seconds / 1e6)
            growth = max(growth, memory.growth)
            seconds, read = await timed(lambda: drain(store.get(Area.QUARANTINE, key)))
            gets.append(read / seconds / 1e6)
        row("S3Storage put (moto, 8 MiB parts)", size, puts, f"RSS +{growth:.1f} MiB")
        row("S3Storage get (moto)", size, gets)
        seconds, _ = await timed(lambda: _move(store, key))
        print(f"S3Storage move (server-side copy + delete) of {mib} MiB: {seconds * 1000:.0f} ms")
        await store.delete(key)
        await store.close()


async def _move(store: ObjectStorage, key: str) -> int:
    await store.move(key, Area.QUARANTINE, Area.CLEAN)
    return 0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local-mib", type=int, default=1024)
    parser.add_argument("--s3-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    args = parser.parse_args()
    template = os.urandom(CHUNK)
    directory = Path(tempfile.mkdtemp(prefix="townhall-storage-", dir=args.dir))
    print(f"| {'storage':<36} |   MiB |   MB/s | median | {'peak RSS':<15} |")
    print(f"|{'-' * 38}|-------|--------|--------|{'-' * 17}|")
    try:
        await local(directory / "local", args.local_mib, template, args.runs)
        if args.s3_mib:
            await s3(directory, args.s3_mib, template, args.runs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
