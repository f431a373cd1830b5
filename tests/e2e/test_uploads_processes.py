"""Uploads in real processes over real sockets: a client that goes away mid-upload leaves
nothing behind (served on embedded defaults); and on PostgreSQL + RabbitMQ, a scan worker
SIGKILLed mid-scan: the upload is scanned after it comes back, once, and its owner is told
exactly once.

The scanner of the second test is clamd as the worker sees it: a clamd-speaking server of the
test's own (INSTREAM), which holds its first scan open until the worker is killed and answers
every later one, so "mid-scan" is a fact, not a race."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from support.app import PASSWORD
from support.notifications import bus_url
from support.process import (
    STREAM_LIMITS,
    free_port,
    run_cli,
    serving,
    start_townhall,
    stop_all,
    townhall_env,
)
from support.services import create_database, database_name, drop_database, require

pytestmark = pytest.mark.timeout(120)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


def sign_up(http: httpx.Client) -> dict[str, str]:
    body = {"username": f"u{uuid.uuid4().hex[:8]}", "password": PASSWORD}
    assert http.post("/api/v1/auth/register", json=body).status_code == 201
    tokens = http.post("/api/v1/auth/token", json=body)
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def test_a_client_that_goes_away_mid_upload_leaves_nothing(tmp_path):
    data_dir = tmp_path / "var"
    env = townhall_env(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}",
        data_dir=str(data_dir),
        log_level="warning",
        **STREAM_LIMITS,
    )
    with serving(env, log=tmp_path / "serve.log") as base, httpx.Client(base_url=base) as http:
        auth = sign_up(http)
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(
                (
                    "POST /api/v1/uploads HTTP/1.1\r\n"
                    f"Host: {host}\r\n"
                    f"Authorization: {auth['Authorization']}\r\n"
                    "Content-Type: application/octet-stream\r\n"
                    'Content-Disposition: attachment; filename="half.bin"\r\n'
                    f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
                ).encode()
            )
            raw.sendall(b"\x00" * (1024 * 1024))  # a tenth of it, then the client is gone
            quarantine = data_dir / "uploads" / "quarantine"
            deadline = time.monotonic() + 10
            while not any(quarantine.glob("*")):  # the server is writing it
                assert time.monotonic() < deadline, "the upload never started"
                time.sleep(0.02)
        deadline = time.monotonic() + 10
        while any(quarantine.glob("*")):
            assert time.monotonic() < deadline, f"left behind: {list(quarantine.glob('*'))}"
            time.sleep(0.05)
        mine = http.get("/api/v1/me/uploads", headers=auth)
        assert mine.json() == {"items": [], "next_cursor": None}
        # The server is none the worse for it.
        whole = http.post("/api/v1/uploads", files={"file": ("ok.png", PNG)}, headers=auth)
        assert whole.status_code == 202, whole.text


class HeldClamd:
    """Speaks clamd's INSTREAM: the first scan is read and never answered (the worker is
    mid-scan); every later one is answered `stream: OK`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.scans = 0
        self.started = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HeldClamd:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.scans += 1
        first = self.scans == 1
        command = await reader.readuntil(b"\0")
        if command != b"zINSTREAM\0":  # a PING, for readiness
            writer.write(b"PONG\0")
            await writer.drain()
            writer.close()
            return
        while True:
            size = int.from_bytes(await reader.readexactly(4), "big")
            if size == 0:
                break
            await reader.readexactly(size)
        if first:
            self.started.set()
            await reader.read()  # held until the worker dies and the socket closes
            writer.close()
            return
        writer.write(b"stream: OK\0")
        await writer.drain()
        writer.close()


async def test_a_scan_worker_killed_mid_scan_scans_later_and_tells_the_owner_once(tmp_path):
    require("PostgreSQL", "127.0.0.1", 5432)
    require("RabbitMQ", "127.0.0.1", 5672)
    name = database_name("uploads_e2e")
    database_url = await create_database(name)
    processes: list = []
    try:
        async with HeldClamd() as clamd:
            env = townhall_env(
                database_url=database_url,
                bus_url=bus_url("rabbitmq", "uploadse2e"),
                data_dir=str(tmp_path / "var"),
                uploads_scanner=f"tcp://127.0.0.1:{clamd.port}",
                log_level="info",
                **STREAM_LIMITS,
            )
            assert run_cli("migrate", env=env).returncode == 0

            def worker(*groups: str, log: str):
                out = open(tmp_path / log, "a")
                process = start_townhall("worker", *groups, env=env, log=out)
                processes.append(process)
                return process

            async def running(process, log: str, times: int = 1) -> None:
                deadline = time.monotonic() + 60
                while (tmp_path / log).read_text().count("worker running") < times:
                    assert process.poll() is None, (tmp_path / log).read_text()[-3000:]
                    assert time.monotonic() < deadline, f"{log} did not come up"
                    await asyncio.sleep(0.05)

            notices = worker("notifications.uploads", "notifications.in_app", log="notify.log")
            scanner = worker("uploads.scan", log="scan.log")
            await running(notices, "notify.log")
            await running(scanner, "scan.log")
            with serving(env, "--no-consumers", log=tmp_path / "edge.log") as base:
                async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                    body = {"username": f"u{uuid.uuid4().hex[:8]}", "password": PASSWORD}
                    assert (await http.post("/api/v1/auth/register", json=body)).is_success
                    token = (await http.post("/api/v1/auth/token", json=body)).json()
                    auth = {"Authorization": f"Bearer {token['access_token']}"}
                    made = await http.post(
                        "/api/v1/uploads", files={"file": ("kill.png", PNG)}, headers=auth
                    )
                    assert made.status_code == 202, made.text
                    upload_id = made.json()["id"]

                    await asyncio.wait_for(clamd.started.wait(), 30)
                    scanner.kill()  # SIGKILL, mid-scan
                    scanner.wait()
                    status = await http.get(f"/api/v1/uploads/{upload_id}", headers=auth)
                    assert status.json()["status"] == "PENDING_SCAN"

                    scanner = worker("uploads.scan", log="scan.log")
                    await running(scanner, "scan.log", times=2)
                    deadline = time.monotonic() + 30
                    while True:
                        status = await http.get(f"/api/v1/uploads/{upload_id}", headers=auth)
                        if status.json()["status"] != "PENDING_SCAN":
                            break
                        assert time.monotonic() < deadline, "never scanned after the restart"
                        await asyncio.sleep(0.1)
                    assert status.json()["status"] == "CLEAN"
                    assert clamd.scans == 2
                    content = await http.get(f"/api/v1/uploads/{upload_id}/content", headers=auth)
                    assert content.content == PNG

                    async def notices_of_upload() -> list[dict]:
                        inbox = await http.get("/api/v1/me/inbox", headers=auth)
                        return [i for i in inbox.json()["items"] if i["category"] == "uploads"]

                    deadline = time.monotonic() + 20
                    while not await notices_of_upload():
                        assert time.monotonic() < deadline, "the owner was never told"
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(1.0)  # time enough for a second notice to show
                    [notice] = await notices_of_upload()
                    assert notice["subject"] == "Your file kill.png is ready"
    finally:
        stop_all(processes)
        await drop_database(name)


__all__ = ["Path"]
