"""`townhall serve` on PostgreSQL + RabbitMQ, under a stream of POSTs, keeps delivering through
a dropped connection and a broker outage without a restart (relay and consumers alike), and
/readyz answers 503 while the broker is out of reach.

The broker is reached through a proxy of the test's own, so the outage never touches the
shared RabbitMQ; the dropped connection is `rabbitmqctl close_connection` on the process's
own, named connections."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import httpx
import pytest

from support.app import PASSWORD
from support.brokers import CuttableProxy, close_rabbitmq_connections
from support.process import installation_with_admin, serving
from support.services import RUN_ID, require
from support.smtp_receiver import SmtpReceiver

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

TOTAL = 300
OUTAGE = 4.0  # seconds RabbitMQ stays out of reach


class ProxyThread:
    """A `CuttableProxy` on an event loop of its own, for a test whose own code blocks."""

    def __init__(self, target_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = CuttableProxy(target_port)
        self.call(self.proxy.start())

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.call(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def delete_queues(prefix: str) -> None:
    """The serve process's queues (its prefix only): leftover quorum queues burden the broker."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, timeout=60
    ).stdout
    for name in listing.split():
        if name.startswith(prefix + "."):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", name], capture_output=True)


def test_serve_on_rabbitmq_delivers_everything_through_a_cut_and_an_outage_and_readyz_tells(
    postgres_url, tmp_path
):
    require("RabbitMQ", "127.0.0.1", 5672)
    prefix = f"t{RUN_ID}o{uuid.uuid4().hex[:6]}"
    name = f"townhall-test-{prefix}"
    proxy = ProxyThread(5672)
    bus = (
        f"amqp://guest:guest@127.0.0.1:{proxy.proxy.port}/?prefix={prefix}&partitions=4"
        f"&backoff_base=0.05&backoff_cap=0.2&queue_expires=60&connection_name={name}"
    )
    try:
        with SmtpReceiver() as smtp:
            env = installation_with_admin(
                PASSWORD,
                database_url=postgres_url,
                bus_url=bus,
                data_dir=str(tmp_path / "var"),
                secret_key="e2e-secret-" + "x" * 32,
                smtp_url=smtp.url,
            )
            with serving(env, log=tmp_path / "serve.log") as base:
                report = asyncio.run(_stream_with_cut_and_outage(base, proxy, name, smtp))
            print(
                f"\n{TOTAL} notifications; all delivered {report['after_cut']:.1f}s after the"
                f" connection cut, {report['after_outage']:.1f}s after the outage ended;"
                f" /readyz 503 {report['readyz_down']:.1f}s into the outage"
            )
    finally:
        proxy.close()
        delete_queues(prefix)


async def _stream_with_cut_and_outage(
    base: str, proxy: ProxyThread, name: str, smtp: SmtpReceiver
) -> dict[str, float]:
    delivered = smtp.receiver.by_notification
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        registered = await client.post(
            "/api/v1/auth/register",
            json={"username": f"r{uuid.uuid4().hex[:8]}", "password": PASSWORD, "email": "o@x.org"},
        )
        assert registered.status_code == 201, registered.text
        recipient = registered.json()["id"]
        token = await client.post(
            "/api/v1/auth/token", json={"username": "boss", "password": PASSWORD}
        )
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert (await client.get("/readyz")).status_code == 200
        ids: list[str] = []

        async def post_steadily() -> None:
            for n in range(TOTAL):
                body = {"recipient": recipient, "channels": ["email"], "subject": f"n{n}"}
                answer = await client.post(
                    "/api/v1/notifications", json={**body, "body": f"m{n}"}, headers=admin
                )
                assert answer.status_code == 202, answer.text  # accepted, outage or not
                ids.append(answer.json()["id"])
                await asyncio.sleep(0.03)

        async def until(condition: Any, within: float, what: str) -> None:
            deadline = time.monotonic() + within
            while not condition():
                assert time.monotonic() < deadline, what
                await asyncio.sleep(0.05)

        posting = asyncio.create_task(post_steadily())
        try:
            await until(lambda: len(delivered()) >= TOTAL // 4, 60, "emails flowing")
            cut_at = time.monotonic()
            assert await close_rabbitmq_connections(name) > 0
            await until(lambda: len(ids) >= TOTAL // 2, 60, "posting goes on")
            # The broker out of reach: connections dropped, new ones refused.
            proxy.call(proxy.proxy.cut())
            outage_at = time.monotonic()
            while (ready := await client.get("/readyz")).status_code != 503:
                assert time.monotonic() - outage_at < OUTAGE, "/readyz still says ready"
                await asyncio.sleep(0.1)
            readyz_down = time.monotonic() - outage_at
            assert ready.headers["content-type"].startswith("application/problem+json")
            assert ready.json()["checks"]["bus"].startswith("unreachable")
            await asyncio.sleep(max(0.0, OUTAGE - readyz_down))
            assert (await client.get("/readyz")).status_code == 503
            proxy.call(proxy.proxy.restore())
            restored_at = time.monotonic()
            await asyncio.wait_for(posting, 120)
            await until(
                lambda: set(ids) <= set(delivered()),
                120,
                f"every accepted notification delivered ({len(set(ids) - set(delivered()))} not)",
            )
            drained_at = time.monotonic()
            assert (await client.get("/readyz")).status_code == 200
        finally:
            posting.cancel()
            await asyncio.gather(posting, return_exceptions=True)
    return {
        "after_cut": drained_at - cut_at,
        "after_outage": drained_at - restored_at,
        "readyz_down": readyz_down,
    }
