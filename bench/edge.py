"""Benchmark: authenticated `GET /api/v1/me` through the whole edge vs a bare FastAPI handler.

Both run as one uvicorn process each (same loop and HTTP parser), driven one after the other
by the same load generator (bench/loadgen.py) at the same concurrency. The edge does
everything a real request does: request id, access log, metrics, rate limits (per IP and per
user), JWT verification, the user's row read from the database, response validation.

    .venv/bin/python bench/edge.py [--seconds 5] [--concurrency 1,16] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import loadgen

HERE = Path(__file__).parent
PASSWORD = "benchmark password"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], port: int):
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{args[2:4]} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def create_postgres_database() -> tuple[str, str]:
    import asyncpg

    name = f"townhall_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def drop_postgres_database(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="1 s per row, for a smoke run")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="townhall-bench-"))
    pg_name = None
    if args.database == "postgresql":
        pg_name, database_url = create_postgres_database()
    else:
        database_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")}
    edge_port, bare_port = free_port(), free_port()
    edge_env = {
        **base_env,
        "TOWNHALL_DATABASE_URL": database_url,
        "TOWNHALL_DATA_DIR": str(tmp),
        "TOWNHALL_PORT": str(edge_port),
        # Limits high enough not to refuse the benchmark; they are still counted per request.
        "TOWNHALL_RATE_LIMITS": "default=100000000/minute;auth=1000/minute",
        "TOWNHALL_RATE_LIMIT_IP": "100000000/minute",
    }
    edge_cmd = [sys.executable, "-m", "townhall", "serve"]
    bare_cmd = [
        sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(HERE),
        "--port", str(bare_port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip

    bare_env = {**base_env, "BENCH_DATABASE_URL": database_url, "BENCH_USERNAME": "bench"}
    rows = []
    load_before = os.getloadavg()[0]
    try:
        with process(edge_cmd, edge_env, edge_port), process(bare_cmd, bare_env, bare_port):
            base = f"http://127.0.0.1:{edge_port}/api/v1"
            httpx.post(f"{base}/auth/register", json={"username": "bench", "password": PASSWORD})
            token = httpx.post(
                f"{base}/auth/token", json={"username": "bench", "password": PASSWORD}
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            for concurrency in levels:
                for name, port, path in (
                    ("bare FastAPI handler", bare_port, "/api/v1/me"),
                    ("bare handler + same DB read", bare_port, "/api/v1/me-db"),
                    ("Townhall edge", edge_port, "/api/v1/me"),
                ):
                    result = asyncio.run(
                        loadgen.run(
                            "127.0.0.1",
                            port,
                            path,
                            headers=auth,
                            concurrency=concurrency,
                            seconds=seconds,
                        )
                    )
                    rows.append((name, concurrency, result))
    finally:
        if pg_name:
            drop_postgres_database(pg_name)

    print(
        f"\nGET /api/v1/me on {args.database}, {seconds:g} s per row, closed loop, keep-alive, "
        "one uvicorn process per target, 2-core machine, load average before the run "
        f"{load_before:.2f}\n"
    )
    header = (
        f"{'target':<28} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'p50 x bare':>10} {'p50 x bare+DB':>13}"
    )
    print(header)
    print("-" * len(header))
    p50s: dict[tuple[str, int], float] = {}
    for name, concurrency, result in rows:
        p50s[(name, concurrency)] = result.p50
        bare = p50s[("bare FastAPI handler", concurrency)]
        bare_db = p50s.get(("bare handler + same DB read", concurrency))
        versus_db = f"{result.p50 / bare_db:>13.2f}" if bare_db else f"{'':>13}"
        print(
            f"{name:<28} {concurrency:>4} {result.rate:>8.0f} {result.p50:>7.2f} "
            f"{result.percentile(99):>7.2f} {result.errors:>6} {result.p50 / bare:>10.2f} "
            f"{versus_db}"
        )


if __name__ == "__main__":
    main()
