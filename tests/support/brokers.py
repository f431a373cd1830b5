"""Cutting a test's own broker connections, and brokers of a test's own to kill and restart.

The shared brokers are never restarted: a connection cut closes only the connections that
carry the test's connection name, and a restart test runs its own server on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from pathlib import Path

import redis.asyncio as aioredis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def close_rabbitmq_connections(name: str) -> int:
    """`rabbitmqctl close_connection` on every connection named `name`; how many."""

    def run() -> int:
        listing = subprocess.run(
            ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        pids = [line.split("\t", 1)[0] for line in listing.splitlines() if f'"{name}"' in line]
        for pid in pids:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, "test cut"],
                capture_output=True,
                check=True,
                timeout=60,
            )
        return len(pids)

    return await asyncio.to_thread(run)


async def kill_redis_clients(url: str, name: str) -> int:
    """CLIENT KILL every connection named `name`; how many."""
    admin = aioredis.Redis.from_url(url)
    try:
        clients = await admin.client_list()
        ids = [c["id"] for c in clients if c.get("name") == name]
        for client_id in ids:
            await admin.client_kill_filter(_id=client_id)
        return len(ids)
    finally:
        await admin.aclose()


class PrivateServer:
    """A broker process of the test's own: `kill()` is a SIGKILL, `start()` again keeps the
    port and the data directory, as a restarted broker would."""

    def __init__(self, command: list[str], port: int) -> None:
        self.command = command
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await wait_for_port(self.port)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    @classmethod
    def redis(cls, data: Path, *, durable: bool = True) -> PrivateServer:
        """`durable`: every write on disk before it is acknowledged, so a SIGKILL loses
        nothing acked; else nothing on disk at all (a restart starts empty)."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = free_port()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
        command += ["--appendonly", "yes" if durable else "no", "--save", ""]
        if durable:
            command += ["--appendfsync", "always"]
        return cls(command, port)

    @classmethod
    def nats(cls, data: Path) -> PrivateServer:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        port = free_port()
        return cls([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data)], port)


class CuttableProxy:
    """A TCP proxy in front of a broker: `cut()` drops every connection through it and
    refuses new ones (the broker looks down, as during a restart); `restore()` listens again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()  # no new connections: the broker looks down
        for writer in list(self.writers):
            writer.transport.abort()  # type: ignore[attr-defined]
        self.writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
