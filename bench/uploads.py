"""Benchmark: uploads (issue 24) through the HTTP edge, beside a bare Starlette peer; the
scanners' throughput; upload-to-notification latency.

    .venv/bin/python bench/uploads.py [--quick] [--stack embedded|pg] [--modes raw,multipart]
        [--runs 3] [--big-runs 2] [--count 200] [--concurrency 4] [--profile]

Processes: `townhall serve --modules identity,notifications,uploads` (uvicorn, uvloop,
httptools) on a free port with the embedded defaults (SQLite, the in-process bus, files under
a temporary data directory, the YARA scanner in process), or with `--stack pg` on a PostgreSQL
database of its own (dropped at the end) and RabbitMQ (queues on a run prefix, expiring 60 s
after the run); `TOWNHALL_UPLOADS_MAX_BYTES` 2 GiB. Beside it the peer, `bench/uploads_peer.py`
under uvicorn with the same loop and parser: a handler that streams the body to a file and does
nothing else (the limit). One user is registered over HTTP and gets a token.

1. Upload throughput, 1 MiB, 100 MiB and 1 GiB (`--quick`: not 1 GiB): the client (this
   process, httpx, one keep-alive connection per server) streams the file from a generator in
   `--chunk` pieces with its Content-Length, as a raw body (`Content-Disposition: attachment`)
   and as `multipart/form-data` (a `file` part); MiB/s from the request's start to its 202.
   `--runs` runs each (`--big-runs` of 1 GiB), Townhall and the peer in turn. After each of
   Townhall's uploads the client waits for the scan to end (not timed in the upload; shown as
   "scan in server") and deletes the upload, so no scan runs beside the next upload. Every
   file's first bytes are run-unique (no cache anywhere can know it).
   The server's VmRSS (/proc/PID/status) is sampled every 50 ms: idle (after start-up and a
   warm-up upload), its peak during each 1 GiB upload, and during that file's scan (target:
   flat, < 100 MiB above idle).
   The peer's writes are made on its event loop; `--peer-threaded` also runs the peer writing
   each chunk from a worker thread, as Townhall's local storage does.
2. Scan throughput of the YARA scanner (yara-x) and of clamd, in this process, over the same
   sizes streamed in 64 KiB chunks: `YaraScanner().scan(...)`, `ClamdScanner(tcp://...)`
   against a clamd of its own (Debian's clamav-daemon, `tests/support/clamd.py`: a signature
   database of two lines, so it measures the protocol and clamd's file handling more than a
   real database's matching). "clamd: not available" when the adapter or clamd is missing.
3. Upload to notification: `--count` uploads of `--small` KiB by `--concurrency` uploaders,
   each with one upload in flight until its notice is seen (closed loop); latency from the
   POST's start to the `uploads` notice: by its `created_at` (server clock,
   the same machine), and as a client polling `/api/v1/me/inbox` every 20 ms first sees it.

`--rescue-after S` sets `TOWNHALL_UPLOADS_RESCUE_AFTER` (default 600 s): an upload whose
`UploadReceived` is not consumed is then scanned by the sweep within 1.5 x S, and the run says
how many sweeps found one (this bench found the engine's window unfair: with fewer slots
than partitions some partitions were never read, so their uploads waited for the sweep; fixed
in the engine, and the run says if it happens again). `--partitions N` sets the bus URL's
`partitions`. `--keep` leaves the uploads in place (no DELETE
after each run). `--profile` runs py-spy on the server during the largest raw Townhall upload
and prints where its CPU goes. Prints tables; asserts nothing about time.
Processes, the data directories and the PostgreSQL database are removed at the end, also on
errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from notifications import (  # noqa: E402  (bench/ is on the path)
    Processes,
    amqp_answers,
    cleanup,
    free_port,
    percentile,
    run_sql,
    terminated_on_signal,
)

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
SIZES = (MiB, 100 * MiB, GiB)
USERNAME, PASSWORD = "uploader", "benchmark password"
MODULES = "identity,notifications,uploads"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
BOUNDARY = "townhallbenchboundary7d3f"
NAMED = re.compile(r"lat-[0-9a-f]{6}-[0-9]{4}\.bin")
BLOCK = os.urandom(MiB)  # every file is this block over and over, its first bytes made unique


def label(size: int) -> str:
    return f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB"


def mib_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


def file_chunks(size: int, chunk: int) -> Iterator[bytes]:
    """`size` bytes in `chunk` pieces: the random block repeated, the first 16 bytes fresh."""
    view = memoryview(BLOCK)
    sent = 0
    first = True
    while sent < size:
        start = sent % MiB
        piece = bytes(view[start : start + min(chunk, size - sent, MiB - start)])
        if first:
            piece = os.urandom(min(16, len(piece))) + piece[16:]
            first = False
        sent += len(piece)
        yield piece


async def file_chunks_async(size: int, chunk: int) -> AsyncIterator[bytes]:
    for piece in file_chunks(size, chunk):
        yield piece


# --- the server's memory --------------------------------------------------------------------


def vm_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


class RssSampler:
    """VmRSS of a process every `interval` seconds, on a thread; `peak_since(t)` is the
    largest sample taken after monotonic time `t`."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), vm_kib(self.pid)))
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def peak_between(self, start: float, end: float) -> int:
        """The largest sample in the window, or the last one before it ends when the window
        is shorter than the interval."""
        values = [kib for at, kib in self.samples if start <= at <= end]
        if not values:
            values = [kib for at, kib in self.samples if at <= end][-1:]
        return max(values) if values else 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


# --- the servers ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    base: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    upload_path: str = "/api/v1/uploads"


class Stack:
    """Townhall's environment for `--stack`: embedded (SQLite, memory bus) or pg (PostgreSQL,
    RabbitMQ); `cleanup()` drops what it made."""

    def __init__(
        self,
        kind: str,
        data_dir: Path,
        run_id: str,
        rescue_after: float | None,
        partitions: int | None,
    ) -> None:
        self.kind, self.data_dir, self.run_id = kind, data_dir, run_id
        self.rescue_after, self.partitions = rescue_after, partitions
        self.database: str | None = None

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")}
        if self.kind == "pg":
            database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}"
            bus_url = f"{AMQP_URL}?prefix=ubench{self.run_id}&queue_expires=60"
        else:
            database_url = f"sqlite+aiosqlite:///{self.data_dir / 'townhall.db'}"
            bus_url = "memory://"
        if self.partitions is not None:
            bus_url += ("&" if "?" in bus_url else "?") + f"partitions={self.partitions}"
        env.update(
            TOWNHALL_DATA_DIR=str(self.data_dir),
            TOWNHALL_DATABASE_URL=database_url,
            TOWNHALL_BUS_URL=bus_url,
            TOWNHALL_HOST="127.0.0.1",
            TOWNHALL_PORT=str(port),
            TOWNHALL_SECRET_KEY=secrets.token_urlsafe(48),
            TOWNHALL_ACCESS_TOKEN_TTL="86400",
            TOWNHALL_RATE_LIMITS="default=100000000/minute;auth=100000/minute",
            TOWNHALL_RATE_LIMIT_IP="100000000/minute",
            TOWNHALL_UPLOADS_MAX_BYTES=str(2 * GiB),
            TOWNHALL_UPLOADS_SCANNER="yara",
            TOWNHALL_UPLOADS_SCAN_TIMEOUT="900",
            TOWNHALL_LOG_LEVEL="warning",
        )
        if self.rescue_after is not None:
            env["TOWNHALL_UPLOADS_RESCUE_AFTER"] = str(self.rescue_after)
        return env

    def prepare(self) -> None:
        if self.kind != "pg":
            return
        if not amqp_answers():
            raise SystemExit("--stack pg needs RabbitMQ on 127.0.0.1:5672 (make services)")
        self.database = f"townhall_uploadsbench_{self.run_id}"
        run_sql(f'CREATE DATABASE "{self.database}"')

    def cleanup(self) -> None:
        if self.database is not None:
            name = self.database
            cleanup(
                f"database {name}",
                lambda: run_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
            )


def wait_http(procs: Processes, name: str, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs.running[name].poll() is not None:
            raise SystemExit(f"{name} exited:\n{procs.log_of(name)[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not answer at {url} within {timeout:.0f} s")


def start_townhall(procs: Processes, stack: Stack, modules: str) -> Server:
    port = free_port()
    procs.start(
        "townhall",
        [sys.executable, "-m", "townhall", "serve", "--modules", modules],
        stack.env(port),
    )
    procs.wait_for_log("townhall", "Townhall is up", timeout=120)
    base = f"http://127.0.0.1:{port}"
    body = {"username": USERNAME, "password": PASSWORD}
    answer = httpx.post(f"{base}/api/v1/auth/register", json=body, timeout=60)
    if answer.status_code != 201:
        raise SystemExit(f"register answered {answer.status_code}: {answer.text}")
    answer = httpx.post(f"{base}/api/v1/auth/token", json=body, timeout=60)
    answer.raise_for_status()
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    return Server("Townhall", base, procs.running["townhall"].pid, headers)


def start_peer(procs: Processes, directory: Path) -> Server:
    port = free_port()
    env = {**os.environ, "UPLOADS_PEER_DIR": str(directory)}
    procs.start(
        "peer",
        [sys.executable, "-m", "uvicorn", "uploads_peer:app", "--app-dir", str(HERE),
         "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
         "--no-access-log", "--log-level", "warning"],
        env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_http(procs, "peer", base + "/")
    return Server("peer", base, procs.running["peer"].pid, upload_path="/upload")


# --- uploading ------------------------------------------------------------------------------


def upload_request(
    server: Server, size: int, mode: str, chunk: int, filename: str, query: str = ""
) -> tuple[dict[str, str], Iterator[bytes]]:
    """The headers and the streamed body of one upload."""
    headers = dict(server.headers)
    if mode == "raw":
        headers.update(
            {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Content-Length": str(size),
            }
        )
        return headers, file_chunks(size, chunk)
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from file_chunks(size, chunk)
        yield tail

    headers.update(
        {
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
    )
    return headers, body()


def upload(
    client: httpx.Client, server: Server, size: int, mode: str, chunk: int, query: str = ""
) -> tuple[float, dict[str, Any]]:
    """Seconds from the request's start to its 202, and the answer."""
    headers, body = upload_request(server, size, mode, chunk, f"bench-{uuid.uuid4().hex[:8]}.bin")
    started = time.perf_counter()
    answer = client.post(server.base + server.upload_path + query, content=body, headers=headers)
    seconds = time.perf_counter() - started
    if answer.status_code != 202:
        raise SystemExit(f"{server.name} upload answered {answer.status_code}: {answer.text}")
    return seconds, answer.json()


def scanned(client: httpx.Client, server: Server, upload_id: str, size: int) -> str:
    """Wait for the upload's scan to end; its status."""
    timeout = 30 + size / MiB / 5  # slower than 5 MiB/s is stuck
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"{server.base}/api/v1/uploads/{upload_id}", headers=server.headers)
        answer.raise_for_status()
        status = str(answer.json()["status"])
        if status != "PENDING_SCAN":
            return status
        time.sleep(0.05)
    raise SystemExit(
        f"upload {upload_id} still PENDING_SCAN after {timeout:.0f} s: the scan never ran "
        "(seen with `--stack embedded`, SQLite; `--stack pg` scans)"
    )


@dataclass
class Runs:
    seconds: list[float] = field(default_factory=list)
    scans: list[float] = field(default_factory=list)  # Townhall: 202 to the scan's end
    rss_upload: list[int] = field(default_factory=list)  # peak VmRSS KiB during the upload
    rss_scan: list[int] = field(default_factory=list)

    def rates(self, size: int) -> list[float]:
        return [mib_per_s(size, s) for s in self.seconds]


def run_uploads(
    client: httpx.Client,
    server: Server,
    sampler: RssSampler,
    size: int,
    mode: str,
    runs: int,
    chunk: int,
    peer_dir: Path,
    query: str = "",
    delete: bool = True,
) -> Runs:
    result = Runs()
    for _ in range(runs):
        begin = time.monotonic()
        seconds, answer = upload(client, server, size, mode, chunk, query)
        uploaded = time.monotonic()
        result.seconds.append(seconds)
        result.rss_upload.append(sampler.peak_between(begin, uploaded))
        if server.name == "Townhall":
            status = scanned(client, server, str(answer["id"]), size)
            done = time.monotonic()
            if status != "CLEAN":
                raise SystemExit(f"a bench file was scanned {status}: {answer}")
            result.scans.append(done - uploaded)
            result.rss_scan.append(sampler.peak_between(uploaded, done))
            if delete:
                deleted = client.delete(
                    f"{server.base}/api/v1/uploads/{answer['id']}", headers=server.headers
                )
                deleted.raise_for_status()
        else:
            for path in peer_dir.glob("*.bin"):
                path.unlink()
    return result


# --- scanners -------------------------------------------------------------------------------


async def scan_rates(sizes: list[int], runs_of: Callable[[int], int]) -> dict[str, dict]:
    """MiB/s of each scanner per size (best and median of its runs), or why it is missing."""
    from townhall.uploads.adapters.yara import YaraScanner

    results: dict[str, dict] = {}
    yara = YaraScanner()
    results["yara-x (in process)"] = await _scan_sizes(yara.scan, sizes, runs_of)
    try:
        from townhall.uploads.adapters.clamd import ClamdScanner
    except ImportError as exc:
        results["clamd"] = {"missing": f"not available (adapter: {exc})"}
        return results
    try:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from support.clamd import running_clamd
    except ImportError as exc:
        results["clamd"] = {"missing": f"not available ({exc})"}
        return results
    directory = Path(tempfile.mkdtemp(prefix="townhall-ubench-clamd-"))
    try:
        limit = f"{max(sizes) // MiB + 16}M"
        with running_clamd(directory, stream_max_length=limit) as clamd:
            print(
                f"  clamd up in {clamd.started_in * 1000:.0f} ms (a two-line database)", flush=True
            )
            scanner = ClamdScanner(clamd.tcp)
            results["clamd (INSTREAM, TCP)"] = await _scan_sizes(scanner.scan, sizes, runs_of)
            await scanner.close()
    except Exception as exc:
        results["clamd"] = {"missing": f"not available ({str(exc)[:200]})"}
    except BaseException as exc:  # pytest.fail / pytest.skip from the test helper
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        results["clamd"] = {"missing": f"not available ({str(exc)[:200]})"}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


async def _scan_sizes(
    scan: Callable[[AsyncIterator[bytes]], Any], sizes: list[int], runs_of: Callable[[int], int]
) -> dict[int, tuple[float, float]]:
    figures = {}
    for size in sizes:
        rates = []
        for _ in range(runs_of(size)):
            started = time.perf_counter()
            verdict = await scan(file_chunks_async(size, 64 * KiB))
            rates.append(mib_per_s(size, time.perf_counter() - started))
            if verdict.status.value != "CLEAN":
                raise SystemExit(f"a bench file was scanned {verdict}")
        figures[size] = (max(rates), statistics.median(rates))
    return figures


# --- upload to notification -----------------------------------------------------------------


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def notification_latency(
    server: Server, count: int, concurrency: int, size: int
) -> dict[str, list[float]]:
    """Per upload: ms from the POST's start to the notice's created_at, to the client first
    seeing it in the inbox, and the POST's own ms. `concurrency` uploaders, each with one
    upload in flight until its notice is seen."""
    names = [f"lat-{uuid.uuid4().hex[:6]}-{n:04d}.bin" for n in range(count)]
    started: dict[str, float] = {}
    seen: dict[str, float] = {}
    created: dict[str, float] = {}
    post_ms: list[float] = []
    notified = {name: asyncio.Event() for name in names}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in names:
        queue.put_nowait(name)
    async with httpx.AsyncClient(base_url=server.base, headers=server.headers, timeout=60) as http:

        async def uploader() -> None:
            while not queue.empty():
                name = queue.get_nowait()
                headers, body = upload_request(server, size, "raw", size, name)
                data = b"".join(body)
                started[name] = time.time()
                t0 = time.perf_counter()
                answer = await http.post(server.upload_path, content=data, headers=headers)
                post_ms.append((time.perf_counter() - t0) * 1000)
                if answer.status_code != 202:
                    raise SystemExit(f"upload answered {answer.status_code}: {answer.text}")
                # Closed loop: each uploader has one upload in flight, to its notice, so the
                # figures are latencies, not the depth of a queue of uploads sent faster than
                # the scan and notification groups take them.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(notified[name].wait(), 60)

        async def poller(until: float) -> None:
            while len(seen) < count and time.monotonic() < until:
                cursor: str | None = None
                now = time.time()
                for _ in range(3):  # the newest 300: more than are in flight
                    params: dict[str, Any] = {"limit": 100}
                    if cursor:
                        params["cursor"] = cursor
                    answer = await http.get("/api/v1/me/inbox", params=params)
                    answer.raise_for_status()
                    page = answer.json()
                    for item in page["items"]:
                        if item["category"] != "uploads":
                            continue
                        for name in NAMED.findall(item["body"]):
                            if name in started and name not in seen:
                                seen[name] = now
                                notified[name].set()
                                created[name] = parse_time(item["created_at"])
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                await asyncio.sleep(0.02)

        watching = asyncio.create_task(poller(time.monotonic() + 300))
        await asyncio.gather(*(uploader() for _ in range(concurrency)))
        await watching
    missing = count - len(seen)
    if missing:
        print(f"  {missing} notices never came", file=sys.stderr)
    return {
        "created": [(created[n] - started[n]) * 1000 for n in seen],
        "seen": [(seen[n] - started[n]) * 1000 for n in seen],
        "post": post_ms,
    }


# --- tables ---------------------------------------------------------------------------------


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}\n")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def rate_cell(size: int, runs: Runs | None) -> str:
    if runs is None or not runs.seconds:
        return "-"
    rates = runs.rates(size)
    return f"{statistics.median(rates):,.0f} (best {max(rates):,.0f})"


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no 1 GiB file, 50 small uploads")
    parser.add_argument("--stack", choices=["embedded", "pg"], default="embedded")
    parser.add_argument("--modules", default=MODULES, help="what `townhall serve` runs")
    parser.add_argument("--modes", default="raw,multipart")
    parser.add_argument("--runs", type=int, default=3, help="runs of 1 and 100 MiB")
    parser.add_argument("--big-runs", type=int, default=2, help="runs of 1 GiB")
    parser.add_argument("--chunk", type=int, default=64, help="client's chunk, KiB")
    parser.add_argument("--count", type=int, default=200, help="small uploads, phase 3")
    parser.add_argument("--concurrency", type=int, default=4, help="small uploads at once")
    parser.add_argument("--small", type=int, default=10, help="small upload's KiB")
    parser.add_argument("--peer-threaded", action="store_true", help="also the peer on threads")
    parser.add_argument("--skip-uploads", action="store_true")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--rescue-after",
        type=float,
        help="TOWNHALL_UPLOADS_RESCUE_AFTER: a scan whose message is lost is swept up after it",
    )
    parser.add_argument(
        "--partitions", type=int, help="the bus's partitions (`?partitions=` of its URL)"
    )
    parser.add_argument("--keep", action="store_true", help="do not DELETE the uploads")
    parser.add_argument("--profile", action="store_true", help="py-spy on the server")
    args = parser.parse_args()
    sizes = [s for s in SIZES if not (args.quick and s >= GiB)]
    if args.quick:
        args.count = min(args.count, 50)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    chunk = args.chunk * KiB

    def runs_of(size: int) -> int:
        return args.big_runs if size >= GiB else args.runs

    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="townhall-ubench-"))
    logs, peer_dir = work / "logs", work / "peer"
    logs.mkdir()
    procs = Processes(logs)
    stack = Stack(args.stack, work / "data", run_id, args.rescue_after, args.partitions)
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start; stack "
        f"{args.stack}; files in {work}",
        flush=True,
    )
    results: dict[tuple[str, str, int], Runs] = {}
    idle: dict[str, int] = {}
    scans: dict[str, dict] = {}
    latency: dict[str, list[float]] = {}
    profile = None
    sampler: RssSampler | None = None
    try:
        with terminated_on_signal():
            stack.prepare()
            townhall = start_townhall(procs, stack, args.modules)
            peer = start_peer(procs, peer_dir)
            sampler = RssSampler(townhall.pid)
            idle["after start"] = vm_kib(townhall.pid)
            systems: list[tuple[str, Server, str]] = [
                ("Townhall", townhall, ""),
                ("peer", peer, ""),
            ]
            if args.peer_threaded:
                systems.append(("peer, threads", peer, "?writes=thread"))
            with httpx.Client(timeout=900) as client:
                if not args.skip_uploads:
                    # Warm-up: the first upload's imports, connections and thread pool.
                    for mode in modes:
                        for _, server, query in systems:
                            run_uploads(
                                client,
                                server,
                                sampler,
                                MiB,
                                mode,
                                1,
                                chunk,
                                peer_dir,
                                query,
                                not args.keep,
                            )
                    time.sleep(1)
                    idle["idle (after warm-up)"] = vm_kib(townhall.pid)
                    for size in sizes:
                        for mode in modes:
                            for name, server, query in systems:
                                print(f"  {name} {mode} {label(size)} ...", flush=True)
                                spy = None
                                if args.profile and name == "Townhall" and size == sizes[-1]:
                                    if mode == modes[0]:
                                        spy = start_spy(procs, logs, f"{label(size)}-{mode}")
                                results[(name, mode, size)] = run_uploads(
                                    client,
                                    server,
                                    sampler,
                                    size,
                                    mode,
                                    runs_of(size),
                                    chunk,
                                    peer_dir,
                                    query,
                                    not args.keep,
                                )
                                if spy is not None:
                                    spy.stop()
                                    profile = spy
                    time.sleep(1)
                    idle["idle (after the uploads)"] = vm_kib(townhall.pid)
                    idle["VmHWM (peak since start)"] = vm_kib(townhall.pid, "VmHWM")
            if not args.skip_latency:
                print(f"  {args.count} uploads of {args.small} KiB to notification ...", flush=True)
                latency = asyncio.run(
                    notification_latency(townhall, args.count, args.concurrency, args.small * KiB)
                )
            procs.stop_all()
            if not args.skip_scan:
                print("  scanners in process ...", flush=True)
                scans = asyncio.run(scan_rates(sizes, runs_of))
    finally:
        if sampler is not None:
            sampler.stop()
        cleanup("processes", procs.stop_all)
        stack.cleanup()
        print(f"(process logs in {logs})", file=sys.stderr)
    rescued = sum(
        line.count("uploads scanned without their message")
        for line in (logs / "townhall.log").read_text(errors="replace").splitlines()
    )
    print(
        f"\nScans the rescue sweep made (their message lost or stuck): {rescued} sweep(s) "
        "with some ('uploads scanned without their message' in the server's log)"
    )
    report(args, sizes, modes, results, idle, scans, latency, runs_of)
    if profile is not None:
        profile.report(f"Townhall during the {label(sizes[-1])} {modes[0]} uploads")
    shutil.rmtree(work / "data", ignore_errors=True)
    shutil.rmtree(peer_dir, ignore_errors=True)


def start_spy(procs: Processes, logs: Path, tag: str) -> Any:
    from spy import Spies

    target = types.SimpleNamespace(running={"townhall": procs.running["townhall"]}, logs=logs)
    return Spies(target, tag)


def report(
    args: Any,
    sizes: list[int],
    modes: list[str],
    results: dict[tuple[str, str, int], Runs],
    idle: dict[str, int],
    scans: dict[str, dict],
    latency: dict[str, list[float]],
    runs_of: Callable[[int], int],
) -> None:
    where = (
        "SQLite, in-process bus, local files"
        if args.stack == "embedded"
        else "PostgreSQL, RabbitMQ, local files"
    )
    if results:
        names = list(dict.fromkeys(name for name, _, _ in results))
        rows = []
        for size in sizes:
            for mode in modes:
                townhall = results.get(("Townhall", mode, size))
                peer = results.get(("peer", mode, size))
                share = "-"
                if townhall and peer:
                    ratio = statistics.median(townhall.rates(size)) / statistics.median(
                        peer.rates(size)
                    )
                    share = f"{ratio:.0%}"
                scan = "-"
                if townhall and townhall.scans:
                    scan = f"{mib_per_s(size, statistics.median(townhall.scans)):,.0f} MiB/s"
                rows.append(
                    [
                        label(size),
                        mode,
                        str(runs_of(size)),
                        *(rate_cell(size, results.get((n, mode, size))) for n in names),
                        share,
                        scan,
                    ]
                )
        print_table(
            f"Upload throughput, MiB/s (median, best) from the request's start to its 202; "
            f"client: httpx, {args.chunk} KiB chunks from a generator; Townhall: {where}, "
            f"{os.cpu_count()} cores shared with the client (load {os.getloadavg()[0]:.1f})",
            ["size", "mode", "runs", *names, "Townhall/peer", "scan in server (after 202)"],
            rows,
        )
        base = idle.get("idle (after warm-up)", idle.get("after start", 0))
        rss_rows = [[what, f"{kib / 1024:,.0f} MiB", ""] for what, kib in idle.items()]
        for size in sizes:
            for mode in modes:
                townhall = results.get(("Townhall", mode, size))
                if not townhall:
                    continue
                up, scan = max(townhall.rss_upload), max(townhall.rss_scan)
                rss_rows.append(
                    [
                        f"peak during {label(size)} {mode} uploads",
                        f"{up / 1024:,.0f} MiB",
                        f"{(up - base) / 1024:+,.0f} MiB over idle",
                    ]
                )
                rss_rows.append(
                    [
                        "peak during their scans",
                        f"{scan / 1024:,.0f} MiB",
                        f"{(scan - base) / 1024:+,.0f} MiB over idle",
                    ]
                )
        print_table(
            "Townhall server's VmRSS (sampled every 50 ms); target: < 100 MiB above idle "
            "during the 1 GiB upload",
            ["when", "VmRSS", ""],
            rss_rows,
        )
    if scans:
        rows = []
        for name, figures in scans.items():
            if "missing" in figures:
                rows.append([name, figures["missing"], *["-"] * (len(sizes) - 1)])
                continue
            rows.append(
                [name, *(f"{figures[s][1]:,.0f} (best {figures[s][0]:,.0f})" for s in sizes)]
            )
        print_table(
            "Scan throughput in process, MiB/s (median, best), 64 KiB chunks; runs as uploads",
            ["scanner", *(label(s) for s in sizes)],
            rows,
        )
    if latency:
        rows = []
        for key, what in (
            ("created", "POST start -> notice's created_at"),
            ("seen", "POST start -> seen in /me/inbox (polled, 20 ms)"),
            ("post", "the POST itself (to its 202)"),
        ):
            values = latency[key]
            rows.append(
                [
                    what,
                    f"{percentile(values, 50):,.1f}",
                    f"{percentile(values, 99):,.1f}",
                    f"{max(values):,.1f}" if values else "-",
                    str(len(values)),
                ]
            )
        print_table(
            f"Upload to notification, {args.count} uploads of {args.small} KiB, "
            f"{args.concurrency} at a time, ms",
            ["measure", "p50", "p99", "max", "n"],
            rows,
        )


if __name__ == "__main__":
    main()
