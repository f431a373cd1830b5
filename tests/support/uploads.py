"""Helpers for uploads' integration tests: the app (identity, notifications, uploads, chat and
the feed) on a stack, and users who upload, read statuses and contents, and their inbox, over
HTTP as a client does.

Stacks (`UPLOAD_STACKS`): the embedded defaults (SQLite, in-process bus, files under the data
directory, YARA rules in process), and PostgreSQL with RabbitMQ, on per-run prefixes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.app import SignedUp, settings_for, sign_up
from support.databases import migrated_app_databases
from support.notifications import bus_url
from support.services import require
from townhall.bootstrap import Runtime, assemble
from townhall.uploads.workers import SCAN_GROUP

UPLOAD_STACKS = ("sqlite+memory", "postgresql+rabbitmq")
NO_LIMITS = {"rate_limits": "default=1000000/minute;auth=100000/minute"}
WITHIN = 20.0  # seconds a scan may take before a test fails
# The standard antivirus test file (eicar.org): harmless, and every scanner detects it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


@dataclass(frozen=True)
class UploadStack:
    name: str
    database_url: str
    bus_url: str


@pytest.fixture(scope="session")
def upload_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One migrated database of each kind for this worker's run; tests share it, each with
    users and queues of its own."""
    yield from migrated_app_databases(tmp_path_factory.mktemp("uploads"), "uploads")


def upload_stack(name: str, databases: dict[str, str]) -> UploadStack:
    if name == "sqlite+memory":
        return UploadStack(name, databases["sqlite"], bus_url("memory", "uploads"))
    require("PostgreSQL", "127.0.0.1", 5432)
    require("RabbitMQ", "127.0.0.1", 5672)
    return UploadStack(name, databases["postgresql"], bus_url("rabbitmq", "uploads"))


@pytest.fixture(params=UPLOAD_STACKS)
def stack(request: pytest.FixtureRequest, upload_databases: dict[str, str]) -> UploadStack:
    return upload_stack(request.param, upload_databases)


Person = SignedUp


class UploadsApp:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.client = client

    async def user(self, label: str = "u", email: str | None = None) -> Person:
        return await sign_up(self.client, label, email)

    async def send(
        self,
        who: Person,
        data: bytes,
        filename: str = "file.bin",
        content_type: str = "application/octet-stream",
    ) -> httpx.Response:
        files = {"file": (filename, data, content_type)}
        return await self.client.post("/api/v1/uploads", files=files, headers=who.headers)

    async def upload(self, who: Person, data: bytes, filename: str = "file.bin", **kw: Any) -> dict:
        answer = await self.send(who, data, filename, **kw)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    async def status(self, who: Person, upload_id: str) -> httpx.Response:
        return await self.client.get(f"/api/v1/uploads/{upload_id}", headers=who.headers)

    async def scanned(self, who: Person, upload_id: str, within: float = WITHIN) -> dict:
        """The upload once its scan has ended (fails the test past `within` seconds)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            answer = await self.status(who, upload_id)
            assert answer.status_code == 200, answer.text
            if answer.json()["status"] != "PENDING_SCAN":
                return dict(answer.json())
            assert asyncio.get_running_loop().time() < deadline, f"{upload_id} never scanned"
            await asyncio.sleep(0.05)

    async def content(self, who: Person, upload_id: str, **headers: str) -> httpx.Response:
        return await self.client.get(
            f"/api/v1/uploads/{upload_id}/content", headers={**who.headers, **headers}
        )

    async def told(self, who: Person, count: int, within: float = WITHIN) -> list[dict]:
        """The owner's `count` upload notices, once there are that many (newest first)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            items = await self.inbox(who)
            if len(items) >= count:
                return items
            assert asyncio.get_running_loop().time() < deadline, f"{len(items)} notices"
            await asyncio.sleep(0.05)

    def scan_worker(self) -> Any:
        """The scan group's handler object, to drive a scan by hand."""
        for spec in self.runtime.consumers:
            if spec.group == SCAN_GROUP:
                return spec.handler_factory().__self__  # type: ignore[attr-defined]
        raise LookupError(SCAN_GROUP)

    async def inbox(self, who: Person) -> list[dict]:
        answer = await self.client.get("/api/v1/me/inbox", headers=who.headers)
        assert answer.status_code == 200, answer.text
        return [i for i in answer.json()["items"] if i["category"] == "uploads"]


@asynccontextmanager
async def uploads_app(
    stack: UploadStack,
    tmp_path: Path,
    modules: list[str] | None = None,
    *,
    without: Sequence[str] = (),
    **overrides: Any,
) -> AsyncIterator[UploadsApp]:
    """The app on `stack`, its consumer groups running but those named in `without`."""
    settings = settings_for(
        stack.database_url,
        tmp_path,
        bus_url=stack.bus_url,
        **{**NO_LIMITS, **overrides},
    )
    runtime = await assemble(settings, modules or ["identity", "notifications", "uploads"])
    app = runtime.create_app()
    groups = [spec.group for spec in runtime.consumers if spec.group not in without]
    await runtime.start(groups=groups if without else None)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://townhall", timeout=30
        ) as client:
            yield UploadsApp(runtime, client)
    finally:
        await runtime.stop()
